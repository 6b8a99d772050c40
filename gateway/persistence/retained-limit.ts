import type { Readable } from 'node:stream'
import type { Logger } from 'pino'
import { createLogLimiter } from '../../runtime/log-limiter.js'
import { withOwnedPayload } from './own-payloads.js'

/** What the limit needs of a broker persistence (aedes' promise API). */
interface RetainedStore {
  storeRetained(packet: RetainedPacket): Promise<void>
  createRetainedStream(pattern: string): Readable
}
interface RetainedPacket {
  topic: string
  payload: Buffer | Uint8Array | string
  [field: string]: unknown
}

export interface RetainedLimitOptions {
  /** Most topics holding a retained message (0: no limit). */
  maxTopics: number
  /** Most payload and topic bytes of retained messages (0: no limit). */
  maxBytes: number
  log?: Logger
  /** Shortest time between two log lines about refused retained messages, ms (default 60 000). */
  logIntervalMs?: number
}

/** How the broker's retained messages stand, for metrics. */
export interface RetainedStats {
  /** Topics holding a retained message now. */
  topics: number
  /** Their payload and topic bytes. */
  bytes: number
  /** Retained messages not kept since start (delivered to the subscribers of the moment only). */
  refused: number
}

export interface RetainedLimit {
  stats(): RetainedStats
}

const sizeOf = (p: RetainedPacket): number => Buffer.byteLength(p.topic) + (typeof p.payload === 'string' ? Buffer.byteLength(p.payload) : p.payload.length)
const emptyOf = (p: RetainedPacket): boolean => p.payload.length === 0

/**
 * Bounds the retained messages a broker keeps, in topics and in bytes. Every retained message is
 * kept in memory and in broker.db until cleared, and any client may retain on a topic of its own
 * choosing where authentication is off (with it on, a device retains only its status and
 * contract): without a bound, a client publishing retained messages on ever new topics grew the
 * gateway until it ran out of memory or disk.
 *
 * A retained message that does not fit is still delivered to the subscribers of the moment but
 * not kept; one that would replace a kept message of its topic clears it instead (a stale value
 * is not left behind). Clearing a topic (an empty retained message) always goes through and
 * makes room. Counted, and logged at most once a minute.
 *
 * Wraps `persistence.storeRetained` in place, after reading the retained messages it holds. What
 * it keeps, it keeps with the payload in memory of its own (own-payloads.ts).
 */
export async function limitRetained(persistence: RetainedStore, opts: RetainedLimitOptions): Promise<RetainedLimit> {
  const { maxTopics, maxBytes } = opts
  const sizes = new Map<string, number>()
  let bytes = 0
  let refused = 0
  for await (const packet of persistence.createRetainedStream('#') as AsyncIterable<RetainedPacket>) {
    const size = sizeOf(packet)
    bytes += size - (sizes.get(packet.topic) ?? 0)
    sizes.set(packet.topic, size)
  }
  const lines = opts.log === undefined ? undefined : createLogLimiter(opts.log, { intervalMs: opts.logIntervalMs })
  const store = persistence.storeRetained.bind(persistence)

  /** Takes a topic's message out of the counts. */
  const forget = (topic: string): void => {
    const had = sizes.get(topic)
    if (had === undefined) return
    sizes.delete(topic)
    bytes -= had
  }

  persistence.storeRetained = (packet: RetainedPacket): Promise<void> => {
    const topic = packet.topic
    if (emptyOf(packet)) {
      forget(topic)
      return store(packet)
    }
    const had = sizes.get(topic)
    const size = sizeOf(packet)
    const full = (had === undefined && maxTopics > 0 && sizes.size >= maxTopics) || (maxBytes > 0 && bytes - (had ?? 0) + size > maxBytes)
    if (full) {
      refused++
      lines?.warn(
        'retained-full',
        { topic: topic.slice(0, 128), retainedTopics: sizes.size, retainedBytes: bytes, maxTopics, maxBytes, refusedSinceStart: refused },
        'retained message not kept: the broker holds as many retained messages as mqtt.retainedMaxTopics / mqtt.retainedMaxBytes allow (it went to the subscribers of the moment)',
      )
      if (had === undefined) return Promise.resolve()
      forget(topic)
      return store({ ...packet, payload: Buffer.alloc(0) })
    }
    bytes += size - (had ?? 0)
    sizes.set(topic, size)
    // Not stored (a full or read-only disk): the counts go back to what the store holds.
    return store(withOwnedPayload(packet)).catch((err: unknown) => {
      if (sizes.get(topic) === size) {
        bytes -= size - (had ?? 0)
        if (had === undefined) sizes.delete(topic)
        else sizes.set(topic, had)
      }
      throw err
    })
  }

  return { stats: () => ({ topics: sizes.size, bytes, refused }) }
}
