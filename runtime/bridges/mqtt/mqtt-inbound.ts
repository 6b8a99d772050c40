import type { IPublishPacket } from 'mqtt'
import { ErrorCode, OutpostError } from '../../errors.js'
import { fillRandom } from '../../lazy-builtin.js'
import type { LogLimiter } from '../../log-limiter.js'
import { LeftUnacknowledged, type FrameHandler, type InboundFrame } from '../../ports/bridge.js'
import type { createBridgeStats, Routes } from '../bridge-kit.js'
import type { MqttClient } from './mqtt-options.js'
import type { OversizedPacket } from './packet-size-guard.js'

/** One subscriber of the bridge. */
export interface LocalSub {
  filter: string
  handler: FrameHandler
}

/** One inbound PUBLISH, as every matching subscriber gets it (one object, shared). */
class MqttFrame implements InboundFrame {
  constructor(
    readonly topic: string,
    readonly payload: Uint8Array,
    readonly retained: boolean,
    readonly redelivered: boolean,
  ) {}
}

/** What the inbound side needs of its bridge. */
export interface MqttInboundOptions {
  maxPayloadBytes: number
  routes: Routes<LocalSub>
  stats: ReturnType<typeof createBridgeStats>
  trouble: LogLimiter
}

/** Inbound side of an MQTT bridge: the packet size guard's limit and marker, PUBLISH packets to subscribers, redelivery. */
export interface MqttInbound {
  /** Largest packet read (remaining length): a payload plus the largest topic and header. */
  readonly maxPacketBytes: number
  /**
   * Payload of a PUBLISH the guard did not read because it was larger than `maxPacketBytes`:
   * random, so no sender can forge it. A PUBLISH carrying it is dropped as FRAME_TOO_LARGE and
   * acknowledged, so the broker does not deliver it again.
   */
  readonly marker: Buffer
  /** Told of every packet larger than `maxPacketBytes` (the sockets' `onOversized`). */
  onOversized(p: OversizedPacket): void
  /**
   * Hands one PUBLISH to its subscribers; a promise when its acknowledgement waits for their
   * handlers, undefined when it can go at once.
   */
  onPublish(topic: string, payload: Buffer, packet: IPublishPacket): Promise<void> | undefined
  /** Handlers whose promises have not settled yet (close waits for them). */
  readonly inFlight: ReadonlySet<Promise<void>>
  /** The connection was lost: QoS 1 packets whose handlers still run will come again. */
  connectionLost(): void
  /** The broker kept no session: it sends nothing again. */
  sessionLost(): void
}

/**
 * Creates the inbound side. Inbound packets are bounded while they are read (packet-size-guard.ts):
 * one larger than a payload plus the largest topic and header is not buffered; it arrives as a
 * PUBLISH carrying `marker`, is dropped as FRAME_TOO_LARGE and acknowledged.
 */
export function createMqttInbound(o: MqttInboundOptions): MqttInbound {
  const { maxPayloadBytes, routes, stats, trouble } = o
  const maxPacketBytes = maxPayloadBytes + 65_536 + 16
  const marker = fillRandom(Buffer.alloc(16))
  let lastOversized: OversizedPacket | undefined
  const inFlight = new Set<Promise<void>>()
  // QoS 1 packet ids whose handlers are running (not yet acknowledged), and those that were when
  // the last connection was lost: the broker of a persistent session sends them again, with the
  // DUP flag or (aedes) without it, so such a packet is marked redelivered either way.
  const unacked = new Set<number>()
  let suspects: Set<number> | undefined

  /** An inbound frame too large to take: dropped, counted, logged at a bounded rate, and acknowledged. */
  const tooLarge = (topic: string, bytes: number | undefined, skipped: boolean): undefined => {
    stats.drop(ErrorCode.FRAME_TOO_LARGE)
    trouble.warn(
      `inbound-${ErrorCode.FRAME_TOO_LARGE}`,
      { topic: topic.slice(0, 256), code: ErrorCode.FRAME_TOO_LARGE, bytes, limit: maxPayloadBytes },
      skipped ? 'dropped inbound frame: larger than the frame limit (skipped while it was read)' : `dropped inbound frame: frame of ${bytes} bytes exceeds the ${maxPayloadBytes}-byte limit`,
    )
    return undefined
  }

  const onPublish = (topic: string, payload: Buffer, packet: IPublishPacket): Promise<void> | undefined => {
    stats.received++
    // Stands in for a PUBLISH the guard did not read (larger than maxPacketBytes).
    if (payload.length === marker.length && marker.equals(payload)) return tooLarge(topic, lastOversized?.bytes, true)
    if (payload.length > maxPayloadBytes) return tooLarge(topic, payload.length, false)
    const targets = routes.match(topic)
    if (targets.length === 0) return undefined
    const id = packet.messageId
    // The suspect id is used up by this packet even when it carries DUP: left in the set, it would
    // mark the next new packet that reuses the id as redelivered (nats-server resends with DUP).
    const suspect = suspects !== undefined && id !== undefined && suspects.delete(id)
    const again = packet.dup === true || suspect
    const frame = new MqttFrame(topic, payload, packet.retain === true, again)
    let waits: Promise<void>[] | undefined
    for (const sub of targets) {
      try {
        const r = sub.handler(frame)
        if (r !== undefined) (waits ??= []).push(r)
      } catch (err) {
        trouble.error('subscriber-threw', { err, topic: topic.slice(0, 256) }, 'subscriber threw; message acknowledged and dropped')
      }
    }
    if (waits === undefined) return undefined
    const all = Promise.all(waits).then(
      () => {},
      (err: unknown) => {
        // Passed on: the bridge then sends no PUBACK (see LeftUnacknowledged).
        if (err instanceof LeftUnacknowledged) throw err
        trouble.error('subscriber-failed', { err, topic: topic.slice(0, 256) }, 'subscriber failed')
      },
    )
    // What close() waits for: settled either way.
    const over: Promise<void> = all.catch(() => {}).finally(() => {
      inFlight.delete(over)
      if (id !== undefined) unacked.delete(id)
    })
    inFlight.add(over)
    if (packet.qos === 1 && id !== undefined) unacked.add(id)
    return all
  }

  return {
    maxPacketBytes,
    marker,
    onOversized(p) {
      lastOversized = p
      // Not a PUBLISH: the connection is closed (a broker sends nothing else that large).
      if (p.type !== 3) trouble.error('packet-too-large', { type: p.type, bytes: p.bytes, limit: maxPacketBytes }, 'the broker sent a packet larger than any frame; connection closed')
    },
    onPublish,
    inFlight,
    connectionLost() {
      suspects = unacked.size > 0 ? new Set(unacked) : undefined
    },
    sessionLost() {
      suspects = undefined
    },
  }
}

/**
 * A SUBACK that refused filters (0x80): the broker's ACL (the gateway's role table), or a broker
 * that cannot take the topic at all (nats-server refuses a level holding '.' or a space, such as a
 * service version "1.0"). Typed NOT_AUTHORIZED: retrying the same filters gets the same answer.
 */
const refusedSubscription = (filters: string[], cause: Error | undefined): OutpostError => {
  const unusual = filters.some((f) => f.split('/').some((level) => level.includes('.') || level.includes(' ')))
  const hint = unusual ? " (a level holding '.' or a space is refused by some brokers, e.g. nats-server's MQTT listener: use versions such as \"1\" or \"v1_0\")" : " (is the device's role on the gateway allowed to subscribe to it?)"
  return new OutpostError(ErrorCode.NOT_AUTHORIZED, `broker refused subscription to ${filters.join(', ')}${hint}`, { cause, details: { filters } })
}

/**
 * Subscribes `filters` on the broker at QoS 1; settles with the SUBACK.
 * @throws (rejects) NOT_AUTHORIZED naming the filters the broker refused, BRIDGE_UNAVAILABLE for any other failure
 */
export const subscribeOnBroker = (c: MqttClient, filters: string[]): Promise<void> =>
  new Promise((resolve, reject) => {
    c.subscribe(filters, { qos: 1 }, (err, granted) => {
      // MQTT.js 5 turns a SUBACK that refuses a filter (0x80) into an error carrying the packet,
      // whose message ("Unspecified error") names no filter; the log should say which one
      // (nats-server refuses any filter with a '.' or a space in a level, e.g. a version "1.0").
      const codes = (err as { packet?: { granted?: unknown } } | undefined)?.packet?.granted
      const named = err && Array.isArray(codes) ? filters.filter((_, i) => codes[i] === 128) : (granted ?? []).filter((g) => g.qos === 128).map((g) => g.topic)
      if (named.length > 0) return reject(refusedSubscription(named, err ?? undefined))
      if (err) return reject(new OutpostError(ErrorCode.BRIDGE_UNAVAILABLE, `subscribe failed: ${err.message}`, { cause: err, retryable: true }))
      resolve()
    })
  })
