import { readFileSync, statSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import type { Duplex } from 'node:stream'
import tls from 'node:tls'
import { Aedes, type AedesOptions, type AedesPublishPacket, type Client, type PublishPacket } from 'aedes'
import { createWebSocketStream, WebSocketServer } from 'ws'
import { ErrorCode, errorMessage, OutpostError } from '../../runtime/errors.js'
import { guardPacketSize } from '../../runtime/bridges/mqtt/packet-size-guard.js'
import { BrokerEmitter } from './broker-emitter.js'
import { connackFirst } from './connack-first.js'

/** Default largest MQTT packet (remaining length) the broker reads from a client: 1 MiB. */
export const DEFAULT_MAX_PACKET_BYTES = 1024 * 1024
/** Default most clients connected at once, over all listeners. */
export const DEFAULT_MAX_CONNECTIONS = 10_000
/** Default most bytes waiting in the broker for one client before QoS 1 deliveries to it cut it off: 1 MiB. */
export const DEFAULT_MAX_QUEUED_BYTES = 1024 * 1024

/** What the broker went through, for logs and metrics. */
export interface BrokerStats {
  /** Clients connected now, over all listeners (before or after their CONNECT). */
  connections: number
  /** Connections closed at accept because `maxConnections` were open. */
  refusedConnections: number
  /** Connections closed because their client sent a packet larger than `maxPacketBytes`. */
  oversizedPackets: number
  /** QoS 0 messages not sent to a client whose socket was full (it did not read fast enough). */
  droppedQos0: number
  /** Clients cut off because more than `maxQueuedBytes` waited for them with QoS 1 messages still coming. */
  slowClientsCut: number
  /** Messages being delivered right now. */
  inFlight: number
  /** Messages held back now until those published before them are delivered (see broker-emitter.ts). */
  heldForOrder: number
  /** Times a message stopped waiting for one published before it that never came (5 s). */
  orderWaitsGivenUp: number
}

/** One more listener on the same broker: its port and the URL clients use. */
export interface BrokerListener {
  readonly port: number
  readonly url: string
}

/** A running local MQTT broker (aedes) and the listeners in front of it. */
export interface MqttBroker {
  readonly aedes: Aedes
  /** The port actually bound (useful with port 0). */
  readonly port: number
  readonly host: string
  /** `mqtt://host:port` for clients on this machine (an IPv6 host in brackets: `mqtt://[::1]:1883`). */
  readonly url: string
  /** MQTT over TLS (`mqtts://host:port`), when configured. */
  readonly tls: BrokerListener | undefined
  /** MQTT over WebSocket (`ws://host:port/path`), when configured. */
  readonly websocket: BrokerListener | undefined
  /** Connections closed because their client sent a packet larger than `maxPacketBytes`. */
  readonly oversizedPackets: number
  stats(): BrokerStats
  /** Stops accepting connections on every listener, drops clients and closes the broker; idempotent. */
  close(): Promise<void>
}

export interface MqttBrokerOptions {
  /** TCP port (default 1883; 0 picks a free one). */
  port?: number
  /** Interface to bind, for every listener (default 127.0.0.1). */
  host?: string
  /**
   * Largest packet a client may send, bytes after the fixed header (default 1 MiB). A larger one
   * closes the client's connection as soon as its header is read, before its body is buffered
   * (aedes and mqtt-packet have no limit of their own). 0 turns the limit off.
   */
  maxPacketBytes?: number
  /** Most topic levels in a publish or subscription (default: aedes' 100, its ceiling); more closes the connection. */
  maxTopicLevels?: number
  /** Most clients connected at once over all listeners (default 10 000); one more is closed at accept. 0: no limit. */
  maxConnections?: number
  /**
   * A client id that may connect when `maxConnections` are open (the gateway's own connection):
   * one connection more (on the TCP listener) is then taken on reserve, and closed at its CONNECT unless it carries
   * this id. Without it, a gateway restarted at its limit found every slot taken by devices that
   * reconnected faster than its own client, and never got its own connection.
   */
  reservedClientId?: string
  /**
   * Bytes that may wait in the broker for one client (default 1 MiB). QoS 0 messages are not
   * sent to a client once its socket is full, so a client that does not read only loses its own
   * QoS 0 messages; QoS 1 messages wait up to this much, then the client is cut off (a persistent
   * session keeps them for its return).
   */
  maxQueuedBytes?: number
  /** A second listener for MQTT over TLS: a certificate and key in PEM files; with `caFile`, clients must present a certificate it signed. */
  tls?: { port: number; certFile: string; keyFile: string; caFile?: string }
  /** A listener for MQTT over WebSocket, e.g. `{ port: 8083, path: '/mqtt' }`. */
  websocket?: { port: number; path: string }
  /** Told of each connection closed for a packet that was too large. */
  onOversizedPacket?(info: { bytes: number; type: number; remoteAddress?: string; clientId?: string }): void
  /** Told of each connection refused because `maxConnections` were open. */
  onRefusedConnection?(info: { listener: ListenerKind; remoteAddress?: string }): void
  /** Told of each client cut off for not reading what the broker had for it. */
  onSlowClient?(info: { clientId?: string; queuedBytes: number }): void
  /**
   * A client's QoS 1 PUBLISH is acknowledged (PUBACK) only once the broker has it: retained and
   * queued for every persistent session in the persistence (default true). aedes on its own sends the PUBACK first and publishes after it,
   * so a broker killed in between has acknowledged messages it never stored, which the
   * publisher (a device's outbox) has already forgotten.
   */
  acknowledgeAfterStore?: boolean
  /**
   * Called for each client PUBLISH that passed authorization, before it is published and
   * acknowledged: a promise makes both wait for it (the forward queue's commit), and its
   * rejection refuses the message (no PUBACK, the connection is closed, the client sends it
   * again). Undefined: nothing to wait for. QoS 0 messages do not wait.
   */
  beforePublish?(packet: PublishPacket): Promise<void> | undefined
  aedes?: AedesOptions
}

type ListenerKind = 'mqtt' | 'mqtts' | 'ws'
const LISTENER_NAMES: Record<ListenerKind, string> = { mqtt: 'MQTT', mqtts: 'MQTT over TLS', ws: 'MQTT over WebSocket' }

/** `host` as it goes in a URL: an IPv6 literal in brackets ([RFC 3986 §3.2.2]), or its colons read as the port's. */
const urlHost = (host: string): string => (net.isIPv6(host) ? `[${host}]` : host)

/** Fixed header, topic length, packet id and some room for MQTT 5 properties, beyond topic and payload. */
const PACKET_OVERHEAD = 16
const propertiesBytes = (p: AedesPublishPacket): number => (p.properties === undefined ? 0 : 64)
/** About how many bytes a PUBLISH of `p` takes on the wire; enough to tell whether it fits in a socket. */
function publishBytes(p: AedesPublishPacket): number {
  const payload = typeof p.payload === 'string' ? Buffer.byteLength(p.payload) : (p.payload?.length ?? 0)
  return Buffer.byteLength(p.topic) + payload + PACKET_OVERHEAD + propertiesBytes(p)
}

/** A certificate chain or key is a few kB; more is not a PEM file. */
const MAX_PEM_BYTES = 1024 * 1024

function readPem(what: string, file: string): Buffer {
  // A device or a pipe (certFile: /dev/zero, say) would be read without end, the process growing until killed.
  let problem: string | undefined
  try {
    const st = statSync(file)
    problem = !st.isFile() ? 'not a regular file' : st.size > MAX_PEM_BYTES ? `${st.size} bytes, more than a PEM file's ${MAX_PEM_BYTES}` : undefined
  } catch {
    // readFileSync below names what is wrong.
  }
  if (problem !== undefined) throw new OutpostError(ErrorCode.INVALID_CONFIG, `cannot read the TLS ${what} file ${file}: ${problem}`, { details: { file } })
  try {
    return readFileSync(file)
  } catch (err) {
    throw new OutpostError(ErrorCode.INVALID_CONFIG, `cannot read the TLS ${what} file ${file}: ${errorMessage(err)}`, { cause: err, details: { file } })
  }
}

/**
 * Starts aedes on a TCP port with TCP_NODELAY on every accepted socket, and on a TLS and a
 * WebSocket port when asked; every listener feeds the same broker.
 *
 * The broker delivers through its own emitter (broker-emitter.ts) and never waits for a client
 * that does not read: it would hold back the publisher and, through it, every other subscriber.
 * @throws PORT_IN_USE when a port is taken (e.g. by Mosquitto on 1883), INVALID_CONFIG for unreadable or invalid TLS files.
 */
export async function startMqttBroker(opts: MqttBrokerOptions = {}): Promise<MqttBroker> {
  const host = opts.host ?? '127.0.0.1'
  const wanted = opts.port ?? 1883
  const maxPacketBytes = opts.maxPacketBytes ?? DEFAULT_MAX_PACKET_BYTES
  const maxConnections = opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS
  const maxQueuedBytes = opts.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES
  // TLS material first: a bad file is a configuration error before anything listens.
  const tlsContext = opts.tls === undefined ? undefined : tlsOptions(opts.tls)

  let refusedConnections = 0
  let oversizedPackets = 0
  let droppedQos0 = 0
  let slowClientsCut = 0
  const cut = new WeakSet<object>()
  const forward = opts.aedes?.authorizeForward
  const authorize = opts.aedes?.authorizePublish
  const emitter = new BrokerEmitter()
  /**
   * Client PUBLISH packets published before their acknowledgement: aedes' own publish of them
   * afterwards is skipped, and calls back when the first one is over (delivered), so that aedes
   * reads the publisher's next packets only then, as it does without this.
   */
  const published = new WeakMap<object, { over: boolean; err?: Error; then?: (err?: Error) => void }>()
  /** aedes' publish with the publishing client (the types leave the client out). */
  type Publish = (packet: PublishPacket, client: Client | null | ((err?: Error) => void), done?: (err?: Error) => void) => void
  /** aedes' publish in count order; `stored` is called when the message reaches the emitter (after the persistence took it). */
  let publish: ((packet: PublishPacket, client: Client | null, done: (err?: Error) => void, stored: () => void) => void) | undefined
  const aedesOptions: AedesOptions = {
    ...opts.aedes,
    mq: emitter,
    ...(opts.acknowledgeAfterStore === false && opts.beforePublish === undefined
      ? {}
      : {
          // Called by aedes between reading a PUBLISH and acknowledging it (handlers/publish.js),
          // so the publish happens here, and the PUBACK waits for it.
          authorizePublish(client: Client | null, packet: PublishPacket, callback: (err?: Error | null) => void) {
            const proceed = (err?: Error | null): void => {
              if (err != null) return callback(err)
              const before = client === null ? undefined : opts.beforePublish?.(packet)
              if (before === undefined) return go()
              // QoS 0: nothing is acknowledged, so nothing waits; the commit goes on behind.
              if (packet.qos === 0) {
                before.catch(() => {})
                return go()
              }
              before.then(go, (e: unknown) => callback(e instanceof Error ? e : new Error(String(e))))
            }
            const go = (): void => {
              // A client's QoS 1 PUBLISH carries a packet id; a will (published by aedes itself) does not.
              if (opts.acknowledgeAfterStore === false || packet.qos !== 1 || client === null || typeof packet.messageId !== 'number' || publish === undefined) return callback(null)
              let answered = false
              const answer = (err?: Error): void => {
                if (answered) return
                answered = true
                callback(err ?? null)
              }
              const run: { over: boolean; err?: Error; then?: (err?: Error) => void } = { over: false }
              published.set(packet, run)
              publish(
                packet,
                client,
                (failed?: Error) => {
                  run.over = true
                  run.err = failed
                  run.then?.(failed)
                  // Not stored: no PUBACK, the connection is closed and the client sends the message again.
                  answer(failed)
                },
                // Stored (retained, queued in the persistence for every session it goes to): the PUBACK
                // goes now; delivery to connected subscribers goes on.
                () => answer(),
              )
            }
            if (authorize === undefined) proceed(null)
            else authorize(client as Client, packet, proceed)
          },
        }),
    ...(opts.maxTopicLevels === undefined ? {} : { maxTopicLevels: opts.maxTopicLevels }),
    // Called for every delivery, before aedes writes it: where a client that does not read is held to its limit.
    authorizeForward(client: Client, packet: AedesPublishPacket) {
      const allowed = forward === undefined ? packet : forward(client, packet)
      if (allowed == null) return allowed
      const conn = client.conn as Duplex
      const queued = conn.writableLength + publishBytes(allowed)
      // A write past the high-water mark makes aedes wait for 'drain' (up to its drainTimeout,
      // 60 s), and with it the publisher's next packets.
      if (queued <= conn.writableHighWaterMark) return allowed
      if (allowed.qos === 0) {
        droppedQos0++
        return null
      }
      if (queued > maxQueuedBytes && !cut.has(client)) {
        cut.add(client)
        slowClientsCut++
        opts.onSlowClient?.({ clientId: client.id ?? undefined, queuedBytes: conn.writableLength })
        // After aedes has stored this delivery for a persistent session: it is sent on the client's return.
        setImmediate(() => conn.destroy())
      }
      return allowed
    },
  }
  const aedes = await Aedes.createBroker(aedesOptions)
  // Every message in count order (see BrokerEmitter): the emitter is told the number each publish
  // takes (the Packet aedes makes first thing in publish takes ++counter) and when it is over,
  // delivered or not. Packets aedes numbers outside publish (retained messages sent to a new
  // subscriber) never reach the emitter and are not waited for.
  const counterOf = (): number => (aedes as unknown as { counter: number }).counter
  const original = (aedes.publish as unknown as Publish).bind(aedes)
  const counted = (packet: PublishPacket, client: Client | null | ((err?: Error) => void), done?: (err?: Error) => void, stored?: () => void): void => {
    const cb = typeof client === 'function' ? client : done
    const n = counterOf() + 1
    emitter.begin(n, stored)
    original(packet, typeof client === 'function' ? null : client, (err?: Error) => {
      // Refused before it was numbered (called back at once, nothing numbered since): no message n is coming.
      if (counterOf() < n) emitter.cancel(n)
      else emitter.end(n)
      cb?.(err)
    })
  }
  publish = counted
  // The instance's own publish, not aedes' code: a packet published before its PUBACK is not published again.
  const skipping: Publish = (packet, client, done) => {
    const run = published.get(packet)
    if (run === undefined) return counted(packet, client, done)
    published.delete(packet)
    const cb = typeof client === 'function' ? client : done
    if (run.over) cb?.(run.err)
    else run.then = cb
  }
  aedes.publish = skipping as unknown as Aedes['publish']

  const holdUntilConnack = connackFirst(aedes)
  const conns = new Set<Duplex>()
  /** The connection taken on reserve (over the limit, for `reservedClientId` only), while it is open. */
  let reserve: { conn: Duplex; listener: ListenerKind; remoteAddress: string | undefined } | undefined
  const refuse = (conn: Duplex, listener: ListenerKind, remoteAddress: string | undefined): void => {
    refusedConnections++
    conn.destroy()
    opts.onRefusedConnection?.({ listener, remoteAddress })
  }
  /** Counts a new connection, or closes it at once when the limit (and the reserve) is taken. */
  const admit = (conn: Duplex, listener: ListenerKind, remoteAddress: string | undefined): boolean => {
    if (maxConnections > 0 && conns.size >= maxConnections) {
      // On the plain TCP listener only (where aedes is handed the socket that was admitted).
      if (opts.reservedClientId === undefined || reserve !== undefined || listener !== 'mqtt') {
        refuse(conn, listener, remoteAddress)
        return false
      }
      const held = { conn, listener, remoteAddress }
      reserve = held
      conn.once('close', () => {
        if (reserve === held) reserve = undefined
      })
      return true
    }
    conns.add(conn)
    conn.once('close', () => conns.delete(conn))
    return true
  }
  // The connection on reserve is for one client id; anyone else is refused as over the limit.
  const preConnect = opts.aedes?.preConnect
  aedes.preConnect = (client, packet, callback) => {
    if (reserve !== undefined && client.conn === reserve.conn && packet.clientId !== opts.reservedClientId) {
      const { conn, listener, remoteAddress } = reserve
      reserve = undefined
      refuse(conn, listener, remoteAddress)
      return callback(null, false)
    }
    if (preConnect === undefined) return callback(null, true)
    preConnect(client, packet, callback)
  }
  /** Hands an admitted connection to aedes, behind the packet size guard. */
  const serve = (conn: Duplex, remoteAddress: string | undefined, req?: http.IncomingMessage): void => {
    // Known once its CONNECT was read; a CONNECT that is itself too large leaves it unknown.
    let client: { id?: string } | undefined
    if (maxPacketBytes > 0) {
      guardPacketSize(conn, {
        maxPacketBytes,
        mode: 'close',
        onOversized: (p) => {
          oversizedPackets++
          opts.onOversizedPacket?.({ bytes: p.bytes, type: p.type, remoteAddress, clientId: client?.id ?? undefined })
        },
      })
    }
    const handled = aedes.handle(conn, req as never)
    holdUntilConnack(handled, conn)
    client = handled as { id?: string } | undefined
  }

  const servers: { kind: ListenerKind; server: net.Server }[] = []
  // noDelay: without it QoS 1 PUBACKs sit behind Nagle's algorithm and request/reply stalls.
  const tcp = net.createServer({ noDelay: true }, (socket) => {
    if (admit(socket, 'mqtt', socket.remoteAddress)) serve(socket, socket.remoteAddress)
  })
  servers.push({ kind: 'mqtt', server: tcp })

  let tlsServer: tls.Server | undefined
  if (tlsContext !== undefined) {
    tlsServer = tls.createServer(tlsContext, (socket) => serve(socket, socket.remoteAddress))
    // Counted and refused on the raw socket, before a handshake is spent on it.
    tlsServer.prependListener('connection', (raw: net.Socket) => {
      raw.setNoDelay(true)
      if (!admit(raw, 'mqtts', raw.remoteAddress)) raw.on('error', () => {})
    })
    // A failed handshake (wrong CA, plain MQTT on the TLS port) closes that socket; nothing else to do.
    tlsServer.on('tlsClientError', () => {})
    servers.push({ kind: 'mqtts', server: tlsServer })
  }

  let wss: WebSocketServer | undefined
  if (opts.websocket !== undefined) {
    const path = opts.websocket.path
    // A WebSocket message holds one or more MQTT packets; one larger than the packet limit is refused by ws itself.
    wss = new WebSocketServer({ noServer: true, maxPayload: maxPacketBytes > 0 ? maxPacketBytes + PACKET_OVERHEAD : undefined })
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
      if (!admit(socket, 'ws', remoteAddress)) return
      ;(req.socket as net.Socket).setNoDelay(true)
      wss!.handleUpgrade(req, socket, head, (ws) => {
        const stream = createWebSocketStream(ws)
        // The socket is what is counted; its stream closes with it.
        stream.on('error', () => {})
        serve(stream, remoteAddress, req)
      })
    })
    web.on('clientError', (_err, socket) => socket.destroy())
    servers.push({ kind: 'ws', server: web })
  }

  const ports: Partial<Record<ListenerKind, number>> = {}
  const listenOn: Record<ListenerKind, number | undefined> = { mqtt: wanted, mqtts: opts.tls?.port, ws: opts.websocket?.port }
  const closeAll = async (): Promise<void> => {
    const stopped = servers.filter((s) => s.server.listening).map((s) => new Promise<void>((r) => s.server.close(() => r())))
    for (const c of conns) c.destroy()
    reserve?.conn.destroy()
    for (const ws of wss?.clients ?? []) ws.terminate()
    await Promise.all(stopped)
    await new Promise<void>((r) => aedes.close(() => r()))
  }
  try {
    for (const { kind, server } of servers) {
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
  } catch (err) {
    await closeAll()
    throw err
  }
  const port = ports.mqtt!
  let closed: Promise<void> | undefined
  return {
    aedes,
    port,
    host,
    url: `mqtt://${urlHost(host)}:${port}`,
    tls: ports.mqtts === undefined ? undefined : { port: ports.mqtts, url: `mqtts://${urlHost(host)}:${ports.mqtts}` },
    websocket: ports.ws === undefined ? undefined : { port: ports.ws, url: `ws://${urlHost(host)}:${ports.ws}${opts.websocket!.path}` },
    get oversizedPackets() {
      return oversizedPackets
    },
    stats: () => ({ connections: conns.size + (reserve === undefined ? 0 : 1), refusedConnections, oversizedPackets, droppedQos0, slowClientsCut, inFlight: emitter.current, heldForOrder: emitter.waiting, orderWaitsGivenUp: emitter.gaveUp }),
    close() {
      closed ??= closeAll()
      return closed
    },
  }
}

/** The TLS server's options from the configured files. @throws INVALID_CONFIG */
function tlsOptions(t: NonNullable<MqttBrokerOptions['tls']>): tls.TlsOptions {
  const options: tls.TlsOptions = { cert: readPem('certificate', t.certFile), key: readPem('key', t.keyFile) }
  if (t.caFile !== undefined) Object.assign(options, { ca: readPem('CA', t.caFile), requestCert: true, rejectUnauthorized: true })
  try {
    // Checked now, so a certificate that does not match its key fails at start, not at the first client.
    tls.createSecureContext(options)
  } catch (err) {
    throw new OutpostError(ErrorCode.INVALID_CONFIG, `the TLS certificate ${t.certFile} and key ${t.keyFile} cannot be used: ${errorMessage(err)}`, { cause: err })
  }
  return options
}
