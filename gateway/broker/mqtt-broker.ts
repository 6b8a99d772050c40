import net from 'node:net'
import { Aedes, type AedesOptions } from 'aedes'
import { ErrorCode, errorMessage, OutpostError } from '../../runtime/errors.js'
import { guardPacketSize } from '../../runtime/bridges/mqtt/packet-size-guard.js'

/** Default largest MQTT packet (remaining length) the broker reads from a client: 1 MiB. */
export const DEFAULT_MAX_PACKET_BYTES = 1024 * 1024

/** A running local MQTT broker (aedes) and the TCP server in front of it. */
export interface MqttBroker {
  readonly aedes: Aedes
  /** The port actually bound (useful with port 0). */
  readonly port: number
  readonly host: string
  /** `mqtt://host:port` for clients on this machine (an IPv6 host in brackets: `mqtt://[::1]:1883`). */
  readonly url: string
  /** Connections closed because their client sent a packet larger than `maxPacketBytes`. */
  readonly oversizedPackets: number
  /** Stops accepting connections, drops clients and closes the broker; idempotent. */
  close(): Promise<void>
}

export interface MqttBrokerOptions {
  /** TCP port (default 1883; 0 picks a free one). */
  port?: number
  /** Interface to bind (default 127.0.0.1). */
  host?: string
  /**
   * Largest packet a client may send, bytes after the fixed header (default 1 MiB). A larger one
   * closes the client's connection as soon as its header is read, before its body is buffered
   * (aedes and mqtt-packet have no limit of their own). 0 turns the limit off.
   */
  maxPacketBytes?: number
  /** Told of each connection closed for a packet that was too large. */
  onOversizedPacket?(info: { bytes: number; type: number; remoteAddress?: string; clientId?: string }): void
  aedes?: AedesOptions
}

/**
 * Starts aedes on a TCP port with TCP_NODELAY on every accepted socket.
 * @throws PORT_IN_USE when the port is taken (e.g. by Mosquitto on 1883).
 */
export async function startMqttBroker(opts: MqttBrokerOptions = {}): Promise<MqttBroker> {
  const host = opts.host ?? '127.0.0.1'
  const wanted = opts.port ?? 1883
  const aedes = await Aedes.createBroker(opts.aedes)
  // noDelay: without it QoS 1 PUBACKs sit behind Nagle's algorithm and request/reply stalls.
  const maxPacketBytes = opts.maxPacketBytes ?? DEFAULT_MAX_PACKET_BYTES
  let oversizedPackets = 0
  const server = net.createServer({ noDelay: true }, (socket) => {
    // Known once its CONNECT was read; a CONNECT that is itself too large leaves it unknown.
    let client: { id?: string } | undefined
    if (maxPacketBytes > 0) {
      guardPacketSize(socket, {
        maxPacketBytes,
        mode: 'close',
        onOversized: (p) => {
          oversizedPackets++
          opts.onOversizedPacket?.({ bytes: p.bytes, type: p.type, remoteAddress: socket.remoteAddress, clientId: client?.id ?? undefined })
        },
      })
    }
    client = aedes.handle(socket) as { id?: string } | undefined
  })
  const sockets = new Set<net.Socket>()
  server.on('connection', (s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(wanted, host, () => {
        server.off('error', reject)
        resolve()
      })
    })
  } catch (err) {
    await new Promise<void>((r) => aedes.close(() => r()))
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'EADDRINUSE') {
      throw new OutpostError(ErrorCode.PORT_IN_USE, `MQTT port ${host}:${wanted} is already in use (another broker such as Mosquitto?); choose another with --port or OUTPOST_MQTT_PORT, or 0 for a free one`, { cause: err, details: { host, port: wanted } })
    }
    throw new OutpostError(ErrorCode.INVALID_CONFIG, `cannot listen on ${host}:${wanted}: ${errorMessage(err)}`, { cause: err })
  }
  const port = (server.address() as net.AddressInfo).port
  let closed: Promise<void> | undefined
  return {
    aedes,
    port,
    host,
    // [RFC 3986 §3.2.2] an IPv6 literal goes in brackets, or its colons read as the port's.
    url: `mqtt://${net.isIPv6(host) ? `[${host}]` : host}:${port}`,
    get oversizedPackets() {
      return oversizedPackets
    },
    close() {
      closed ??= (async () => {
        const stopped = new Promise<void>((r) => server.close(() => r()))
        for (const s of sockets) s.destroy()
        await stopped
        await new Promise<void>((r) => aedes.close(() => r()))
      })()
      return closed
    },
  }
}
