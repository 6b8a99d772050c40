import http from 'node:http'
import net from 'node:net'
import type { Duplex } from 'node:stream'
import tls from 'node:tls'
import type { Aedes } from 'aedes'
import { createWebSocketStream, WebSocketServer } from 'ws'
import { ErrorCode, errorMessage, OutpostError } from '../../runtime/errors.js'
import { guardPacketSize } from '../../runtime/bridges/mqtt/packet-size-guard.js'
import { LISTENER_NAMES, type BrokerLimits, type ListenerKind, type MqttBrokerOptions } from './broker-options.js'
import type { BrokerCounters } from './broker-stats.js'
import { connackFirst } from './connack-first.js'
import type { ConnectionLimit } from './connection-limit.js'
import { PACKET_OVERHEAD } from './slow-clients.js'

/** The servers in front of the broker, in listening order (TCP, then TLS, then WebSocket). */
export interface Listeners {
  readonly servers: { kind: ListenerKind; server: net.Server }[]
  /** The WebSocket server, when configured: its clients are not the HTTP server's to close. */
  readonly wss: WebSocketServer | undefined
}

/**
 * A TCP listener with TCP_NODELAY on every accepted socket, and a TLS and a WebSocket one when
 * asked; each connection is admitted by `limit`, then handed to aedes behind the packet size
 * guard, its deliveries held until its CONNACK (connack-first.ts). Nothing listens yet.
 */
export function createListeners(aedes: Aedes, opts: MqttBrokerOptions, limits: BrokerLimits, tlsContext: tls.TlsOptions | undefined, limit: ConnectionLimit, counters: BrokerCounters): Listeners {
  const { maxPacketBytes } = limits
  const holdUntilConnack = connackFirst(aedes)
  /** Hands an admitted connection to aedes, behind the packet size guard. */
  const serve = (conn: Duplex, remoteAddress: string | undefined, counted: Duplex, req?: http.IncomingMessage): void => {
    // Known once its CONNECT was read; a CONNECT that is itself too large leaves it unknown.
    let client: { id?: string } | undefined
    if (maxPacketBytes > 0) {
      guardPacketSize(conn, {
        maxPacketBytes,
        mode: 'close',
        onOversized: (p) => {
          counters.oversizedPackets++
          opts.onOversizedPacket?.({ bytes: p.bytes, type: p.type, remoteAddress, clientId: client?.id ?? undefined })
        },
      })
    }
    const handled = aedes.handle(conn, req as never)
    limit.track(handled, counted)
    holdUntilConnack(handled, conn)
    client = handled as { id?: string } | undefined
  }

  const servers: { kind: ListenerKind; server: net.Server }[] = []
  // noDelay: without it QoS 1 PUBACKs sit behind Nagle's algorithm and request/reply stalls.
  const tcp = net.createServer({ noDelay: true }, (socket) => {
    if (limit.admit(socket, 'mqtt', socket.remoteAddress)) serve(socket, socket.remoteAddress, socket)
  })
  servers.push({ kind: 'mqtt', server: tcp })

  if (tlsContext !== undefined) {
    // The raw socket under each TLS one, by its peer (one connection per address and port).
    const rawOf = new Map<string, net.Socket>()
    const peer = (s: net.Socket): string => `${s.remoteAddress}|${s.remotePort}`
    const tlsServer = tls.createServer(tlsContext, (socket) => serve(socket, socket.remoteAddress, rawOf.get(peer(socket)) ?? socket))
    // Counted and refused on the raw socket, before a handshake is spent on it.
    tlsServer.prependListener('connection', (raw: net.Socket) => {
      raw.setNoDelay(true)
      if (!limit.admit(raw, 'mqtts', raw.remoteAddress)) return void raw.on('error', () => {})
      const key = peer(raw)
      rawOf.set(key, raw)
      raw.once('close', () => {
        if (rawOf.get(key) === raw) rawOf.delete(key)
      })
    })
    // A failed handshake (wrong CA, plain MQTT on the TLS port) closes that socket; nothing else to do.
    tlsServer.on('tlsClientError', () => {})
    servers.push({ kind: 'mqtts', server: tlsServer })
  }

  let wss: WebSocketServer | undefined
  if (opts.websocket !== undefined) {
    const path = opts.websocket.path
    // A WebSocket message holds one or more MQTT packets; one larger than the packet limit is refused by ws itself.
    const ws = new WebSocketServer({ noServer: true, maxPayload: maxPacketBytes > 0 ? maxPacketBytes + PACKET_OVERHEAD : undefined })
    wss = ws
    const web = http.createServer((_req, res) => {
      res.writeHead(426, { 'content-type': 'text/plain', upgrade: 'websocket' }).end('MQTT over WebSocket only\n')
    })
    web.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      const remoteAddress = req.socket.remoteAddress
      socket.on('error', () => {})
      if (new URL(req.url ?? '/', 'http://x').pathname !== path) {
        socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n')
        return
      }
      if (!limit.admit(socket, 'ws', remoteAddress)) return
      ;(req.socket as net.Socket).setNoDelay(true)
      ws.handleUpgrade(req, socket, head, (client) => {
        const stream = createWebSocketStream(client)
        // The socket is what is counted; its stream closes with it.
        stream.on('error', () => {})
        serve(stream, remoteAddress, socket, req)
      })
    })
    web.on('clientError', (_err, socket) => socket.destroy())
    servers.push({ kind: 'ws', server: web })
  }
  return { servers, wss }
}

/**
 * Binds every listener in turn, on `host` and its configured port; the ports actually bound.
 * @throws PORT_IN_USE when a port is taken, INVALID_CONFIG when it cannot be listened on; the
 * listeners bound before stay open (the broker's close stops them).
 */
export async function listenAll(listeners: Listeners, opts: MqttBrokerOptions, limits: BrokerLimits): Promise<Partial<Record<ListenerKind, number>>> {
  const { host } = limits
  const ports: Partial<Record<ListenerKind, number>> = {}
  const listenOn: Record<ListenerKind, number | undefined> = { mqtt: limits.port, mqtts: opts.tls?.port, ws: opts.websocket?.port }
  for (const { kind, server } of listeners.servers) {
    const port = listenOn[kind]!
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, host, () => {
        server.off('error', reject)
        resolve()
      })
    }).catch((err: unknown) => {
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'EADDRINUSE') {
        throw new OutpostError(
          ErrorCode.PORT_IN_USE,
          kind === 'mqtt'
            ? `MQTT port ${host}:${port} is already in use (another broker such as Mosquitto?); choose another with --port or OUTPOST_MQTT_PORT, or 0 for a free one`
            : `${LISTENER_NAMES[kind]} port ${host}:${port} is already in use; choose another in the configuration, or 0 for a free one`,
          { cause: err, details: { host, port, listener: kind } },
        )
      }
      throw new OutpostError(ErrorCode.INVALID_CONFIG, `cannot listen for ${LISTENER_NAMES[kind]} on ${host}:${port}: ${errorMessage(err)}`, { cause: err, details: { host, port, listener: kind } })
    })
    ports[kind] = (server.address() as net.AddressInfo).port
  }
  return ports
}
