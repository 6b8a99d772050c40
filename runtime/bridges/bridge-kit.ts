import type { BridgeStats, BridgeStatus } from '../ports/bridge.js'
import { topicMatches } from '../wire/topics.js'

/** Largest inbound payload a bridge takes unless told otherwise: 256 KiB (the wire codec's frame limit). */
export const DEFAULT_MAX_PAYLOAD_BYTES = 256 * 1024

/** Status holder with listeners and an async stream; shared by every bridge adapter. */
export interface StatusHub {
  readonly current: BridgeStatus
  set(status: BridgeStatus): void
  on(listener: (status: BridgeStatus) => void): () => void
  stream(signal?: AbortSignal): AsyncIterable<BridgeStatus>
}

/** Creates a status holder. */
export function createStatusHub(): StatusHub {
  let current: BridgeStatus = { type: 'idle' }
  const listeners = new Set<(s: BridgeStatus) => void>()
  const hub: StatusHub = {
    get current() {
      return current
    },
    set(status) {
      current = status
      for (const l of [...listeners]) l(status)
    },
    on(listener) {
      listeners.add(listener)
      return () => listeners.delete(listener)
    },
    stream(signal) {
      return {
        [Symbol.asyncIterator]() {
          const queue: BridgeStatus[] = [current]
          let wake: (() => void) | undefined
          let done = current.type === 'closed'
          const off = hub.on((s) => {
            queue.push(s)
            if (s.type === 'closed') done = true
            wake?.()
          })
          const onAbort = (): void => {
            done = true
            queue.length = 0
            wake?.()
          }
          signal?.addEventListener('abort', onAbort, { once: true })
          const finish = (): IteratorResult<BridgeStatus> => {
            off()
            signal?.removeEventListener('abort', onAbort)
            return { done: true, value: undefined }
          }
          return {
            async next(): Promise<IteratorResult<BridgeStatus>> {
              for (;;) {
                const s = queue.shift()
                if (s !== undefined) return { done: false, value: s }
                if (done) return finish()
                await new Promise<void>((r) => (wake = r))
                wake = undefined
              }
            },
            async return(): Promise<IteratorResult<BridgeStatus>> {
              done = true
              return finish()
            },
          }
        },
      }
    },
  }
  return hub
}

/** Creates zeroed bridge counters with a helper to count drops. */
export function createBridgeStats(): BridgeStats & { drop(code: string): void } {
  const stats = {
    published: 0,
    received: 0,
    dropped: {} as Record<string, number>,
    drop(code: string) {
      stats.dropped[code] = (stats.dropped[code] ?? 0) + 1
    },
  }
  return stats
}

/** Copies counters for a caller to keep. */
export function snapshotStats(s: BridgeStats): BridgeStats {
  return { published: s.published, received: s.received, dropped: { ...s.dropped } }
}

/** Something subscribed on a topic filter. */
export interface Routed {
  readonly filter: string
}

/**
 * Subscriptions by topic filter, and which of them a topic matches. The routing cache of every
 * transport: topic → matching subscriptions, remembered (10,000 topics at most) and forgotten
 * whenever the subscriptions change.
 */
export interface Routes<S extends Routed> {
  /** The subscriptions, in the order they were added (do not change it directly). */
  readonly all: readonly S[]
  add(sub: S): void
  /** Removes one subscription; false when it was not there. */
  remove(sub: S): boolean
  /** Removes every subscription `drop` says to. */
  removeWhere(drop: (sub: S) => boolean): void
  /** The subscriptions whose filter matches `topic` (MQTT `+` and `#`). */
  match(topic: string): S[]
}

/** Creates an empty routing table. */
export function createRoutes<S extends Routed>(): Routes<S> {
  const subs: S[] = []
  const cache = new Map<string, S[]>()
  return {
    all: subs,
    add(sub) {
      subs.push(sub)
      cache.clear()
    },
    remove(sub) {
      const i = subs.indexOf(sub)
      if (i < 0) return false
      subs.splice(i, 1)
      cache.clear()
      return true
    },
    removeWhere(drop) {
      for (let i = subs.length - 1; i >= 0; i--) if (drop(subs[i]!)) subs.splice(i, 1)
      cache.clear()
    },
    match(topic) {
      let hit = cache.get(topic)
      if (hit === undefined) {
        hit = subs.filter((s) => topicMatches(s.filter, topic))
        if (cache.size > 10_000) cache.clear()
        cache.set(topic, hit)
      }
      return hit
    },
  }
}
