import type { Socket } from 'node:net'
import { createPacketIds, type PacketIds } from './packet-ids.js'
import { varIntBytes, writeVarInt } from './var-int.js'

/** Called once when a direct publish settles: without an error on its PUBACK, with one otherwise. */
export type DirectDone = (err?: Error) => void

/**
 * QoS 1 publishes written by the transport itself, for callers that send again after a reconnect
 * (`PublishOptions.callerResends`: the outbox pump). MQTT.js copies every packet it publishes
 * (rfdc) and keeps it in its outgoing store to send it again on the next connection; a caller
 * that holds every frame durably and starts again from its oldest unacknowledged one needs
 * neither, and neither the parse of each PUBACK into an object. Here a PUBLISH is one buffer
 * written on the socket, its packet id taken from the ids MQTT.js also uses (packet-ids.ts), and
 * its PUBACK is picked out of the inbound bytes by the packet size guard before MQTT.js reads them.
 */
export interface DirectPublisher {
  /** The packet ids of the connection, shared with MQTT.js (its `messageIdProvider` option). */
  readonly ids: PacketIds
  /** Writes a QoS 1 PUBLISH on `socket`; `done` is called with its PUBACK, or with an error. */
  publish(socket: Socket, topic: string, payload: Uint8Array, retain: boolean, done: DirectDone): void
  /** A PUBACK was read: true when it answers one of these publishes (then it is consumed here). */
  puback(id: number, reasonCode: number): boolean
  /** The connection is gone: every publish still awaiting its PUBACK (or its turn to be written) fails. */
  lost(reason: string): void
}

// Frames up to this size are copied behind their header (one write); larger ones are written
// as a second buffer, not copied.
const COPY_UP_TO = 4_096
// Topic names encoded once each; the outbox publishes on a handful of topics.
const TOPIC_CACHE = 256

/** Creates the direct publisher of one bridge; `protocolVersion` 5 adds an empty property list. */
export function createDirectPublisher(protocolVersion: 4 | 5): DirectPublisher {
  const ids = createPacketIds()
  const v5 = protocolVersion === 5
  // Publishes awaiting their PUBACK, by packet id. Made at the first publish, after the broker
  // answered: 64 Ki slots took 0.3-0.5 ms, at every start of a device, before it was ready.
  let pending: (DirectDone | undefined)[] | undefined
  let count = 0 // how many of them
  // Packets not written yet because the socket asked to wait (a write returned false), in order.
  let waiting: { socket: Socket; packet: Buffer; payload: Uint8Array | undefined }[] = []
  const topics = new Map<string, Buffer>()
  let corked: Socket | undefined

  const topicBytes = (topic: string): Buffer => {
    let b = topics.get(topic)
    if (b === undefined) {
      b = Buffer.from(topic, 'utf8')
      if (topics.size >= TOPIC_CACHE) topics.clear()
      topics.set(topic, b)
    }
    return b
  }

  const uncork = (): void => {
    const s = corked
    corked = undefined
    s?.uncork()
  }

  const write = (socket: Socket, packet: Buffer, payload: Uint8Array | undefined): void => {
    // One cork per tick: the PUBLISHes of a burst reach the kernel as one writev.
    if (corked !== socket) {
      corked = socket
      socket.cork()
      process.nextTick(uncork)
    }
    socket.write(packet)
    if (payload !== undefined) socket.write(payload)
  }

  const flush = (): void => {
    const queue = waiting
    waiting = []
    let i = 0
    for (; i < queue.length; i++) {
      const w = queue[i]!
      if (w.socket.destroyed || w.socket.writableNeedDrain) break
      write(w.socket, w.packet, w.payload)
    }
    if (i < queue.length) {
      waiting = queue.slice(i).concat(waiting)
      const s = waiting[0]!.socket
      if (!s.destroyed) s.once('drain', flush)
    }
  }

  return {
    ids,
    publish(socket, topic, payload, retain, done) {
      if (socket.destroyed || !socket.writable) return done(new Error('connection closed'))
      const t = topicBytes(topic)
      if (t.length > 65_535) return done(new Error(`topic of ${t.length} bytes is longer than MQTT allows`))
      const id = ids.take()
      if (id === null) return done(new Error('no packet id free'))
      const variable = 2 + t.length + 2 + (v5 ? 1 : 0)
      const rest = variable + payload.length
      const lengthBytes = varIntBytes(rest)
      const copy = payload.length <= COPY_UP_TO
      const packet = Buffer.allocUnsafe(1 + lengthBytes + variable + (copy ? payload.length : 0))
      packet[0] = retain ? 0x33 : 0x32 // PUBLISH, QoS 1
      let o = writeVarInt(packet, 1, rest)
      packet.writeUInt16BE(t.length, o)
      t.copy(packet, o + 2)
      o += 2 + t.length
      packet.writeUInt16BE(id, o)
      o += 2
      if (v5) packet[o++] = 0 // no properties
      if (copy) packet.set(payload, o)
      pending ??= new Array<DirectDone | undefined>(65_536)
      pending[id] = done
      count++
      if (waiting.length > 0 || socket.writableNeedDrain) {
        if (waiting.length === 0) socket.once('drain', flush)
        waiting.push({ socket, packet, payload: copy ? undefined : payload })
        return
      }
      write(socket, packet, copy ? undefined : payload)
    },
    puback(id, reasonCode) {
      const done = pending?.[id]
      if (done === undefined) return false
      pending![id] = undefined
      count--
      ids.release(id)
      // MQTT 5: a reason code of 0x80 or more is a failure (0x10, no matching subscribers, is not).
      if (reasonCode >= 0x80) done(new Error(`the broker refused the publish (reason code 0x${reasonCode.toString(16)})`))
      else done()
      return true
    },
    lost(reason) {
      waiting = []
      if (count === 0 || pending === undefined) return
      count = 0
      const err = new Error(reason)
      const failed: DirectDone[] = []
      for (let id = 1; id < 65_536; id++) {
        const done = pending[id]
        if (done === undefined) continue
        pending[id] = undefined
        ids.release(id)
        failed.push(done)
      }
      for (const done of failed) done(err)
    },
  }
}
