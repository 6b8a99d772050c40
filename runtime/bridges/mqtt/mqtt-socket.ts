import type net from 'node:net'
import type tls from 'node:tls'
import { guardPacketSize, type OversizedPacket } from './packet-size-guard.js'
import { builtin } from '../../lazy-builtin.js'

/** Where and how an MQTT bridge connects. */
export interface MqttSocketOptions {
  host: string
  port: number
  secure: boolean
  tls?: tls.ConnectionOptions
  /** Largest packet read (remaining length), bytes. */
  maxPacketBytes: number
  /** Payload a PUBLISH larger than `maxPacketBytes` is shrunk to (see MqttInbound.marker). */
  marker: Buffer
  protocolVersion: 4 | 5
  /** Told of every packet larger than `maxPacketBytes` (a PUBLISH is shrunk, anything else closes the connection). */
  onOversized(packet: OversizedPacket): void
  /** Offered every PUBACK read; true consumes it (see PacketSizeGuardOptions.onPuback). */
  onPuback?(id: number, reasonCode: number): boolean
}

/** Sockets to a broker, each bounding the packets it reads. */
export interface MqttSockets {
  /** Opens a socket (MQTT.js's stream builder). */
  open(): net.Socket
}

/** Creates the socket factory of one bridge. */
export function createMqttSockets(opts: MqttSocketOptions): MqttSockets {
  return {
    open() {
      // [Issue 2] Without TCP_NODELAY, QoS 1 request/reply stalls on delayed ACKs (Nagle).
      const { host, port } = opts
      const socket = opts.secure ? builtin('node:tls').connect({ host, port, servername: host, ...opts.tls }) : builtin('node:net').connect({ host, port })
      socket.setNoDelay(true)
      guardPacketSize(socket, {
        maxPacketBytes: opts.maxPacketBytes,
        mode: 'shrink',
        marker: opts.marker,
        protocolVersion: opts.protocolVersion,
        onOversized: opts.onOversized,
        onPuback: opts.onPuback,
      })
      return socket
    },
  }
}
