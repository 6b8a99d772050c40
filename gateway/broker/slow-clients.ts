import type { Duplex } from 'node:stream'
import type { AedesOptions, AedesPublishPacket, Client } from 'aedes'
import type { MqttBrokerOptions } from './broker-options.js'
import type { BrokerCounters } from './broker-stats.js'

/** Fixed header, topic length, packet id and some room for MQTT 5 properties, beyond topic and payload. */
export const PACKET_OVERHEAD = 16
const propertiesBytes = (p: AedesPublishPacket): number => (p.properties === undefined ? 0 : 64)
/** About how many bytes a PUBLISH of `p` takes on the wire; enough to tell whether it fits in a socket. */
function publishBytes(p: AedesPublishPacket): number {
  const payload = typeof p.payload === 'string' ? Buffer.byteLength(p.payload) : (p.payload?.length ?? 0)
  return Buffer.byteLength(p.topic) + payload + PACKET_OVERHEAD + propertiesBytes(p)
}

/**
 * aedes' `authorizeForward`, called for every delivery before aedes writes it: where a client
 * that does not read is held to its limit (`maxQueuedBytes`), after the configured one (if any)
 * let the delivery through. A QoS 0 message that does not fit behind what waits in the client's
 * socket is not sent; a QoS 1 message past the limit cuts the client off.
 */
export function forwardToReaders(opts: MqttBrokerOptions, maxQueuedBytes: number, counters: BrokerCounters): NonNullable<AedesOptions['authorizeForward']> {
  const forward = opts.aedes?.authorizeForward
  const cut = new WeakSet<object>()
  return (client: Client, packet: AedesPublishPacket) => {
    const allowed = forward === undefined ? packet : forward(client, packet)
    if (allowed == null) return allowed
    const conn = client.conn as Duplex
    const waiting = conn.writableLength
    const queued = waiting + publishBytes(allowed)
    // A write past the high-water mark makes aedes wait for 'drain' (up to its drainTimeout,
    // 60 s), and with it the publisher's next packets. A client that has taken everything sent
    // so far (nothing waits in its socket) gets a message of any size: one larger than the
    // high-water mark (16 KiB), a command result of 100 kB, say, was dropped on its own size,
    // however fast the client read, and every such call ran to its TIMEOUT.
    if (queued <= conn.writableHighWaterMark || waiting === 0) return allowed
    if (allowed.qos === 0) {
      counters.droppedQos0++
      return null
    }
    if (queued > maxQueuedBytes && !cut.has(client)) {
      cut.add(client)
      counters.slowClientsCut++
      opts.onSlowClient?.({ clientId: client.id ?? undefined, queuedBytes: conn.writableLength })
      // After aedes has stored this delivery for a persistent session: it is sent on the client's return.
      setImmediate(() => conn.destroy())
    }
    return allowed
  }
}
