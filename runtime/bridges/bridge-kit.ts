import { ErrorCode, OutpostError } from '../errors.js'
import type { BridgeStats, BridgeStatus } from '../ports/bridge.js'
import type { Envelope } from '../wire/envelope.js'

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

interface Pending extends DeadlineEntry {
  resolve(env: Envelope): void
  reject(err: OutpostError): void
}

/** One request waiting for its reply (a class: no closures allocated per request). */
class PendingRequest implements Pending {
  readonly deadline: number
  tracked = false
  constructor(
    readonly command: Envelope,
    private readonly sentAt: number,
    readonly resolve: (env: Envelope) => void,
    readonly reject: (err: OutpostError) => void,
    private readonly onExpired: (p: PendingRequest) => void,
    readonly memo: unknown,
  ) {
    this.deadline = command.deadline!
  }
  expire(): void {
    this.onExpired(this)
    const c = this.command
    const ms = this.deadline - this.sentAt
    this.reject(new OutpostError(ErrorCode.TIMEOUT, `no reply to ${c.service}.${c.name} within ${ms} ms`, { retryable: true, details: { service: c.service, command: c.name, timeoutMs: ms } }))
  }
}

/** Requests waiting for their replies, keyed by command id; enforces deadlines. */
export interface PendingReplies {
  readonly size: number
  /** Registers a request; the promise settles with its reply or a TIMEOUT at the deadline. `memo` travels with it (e.g. the encoded frame, for re-sending). */
  wait(command: Envelope, now: number, memo?: unknown): Promise<Envelope>
  /** Visits every request still waiting. */
  forEach(fn: (command: Envelope, memo: unknown) => void): void
  /** Hands a reply to its waiter; false when nobody waits (late or unknown) or the reply is not from the command's target. */
  settle(reply: Envelope): boolean
  /** Fails one waiter (the publish of its command failed). */
  fail(id: string, err: OutpostError): void
  /** Fails every waiter (bridge closed). */
  failAll(err: OutpostError): void
  /** Resolves once no request is waiting, or after `ms`. */
  drained(ms: number): Promise<void>
}

/** Creates the pending-reply table. */
export function createPendingReplies(now: () => number = Date.now): PendingReplies {
  const pending = new Map<string, Pending>()
  const deadlines = createDeadlineTracker(now)
  let onEmpty: (() => void) | undefined
  const expired = (p: PendingRequest): void => {
    pending.delete(p.command.id)
    if (pending.size === 0) onEmpty?.()
  }
  const remove = (id: string): Pending | undefined => {
    const p = pending.get(id)
    if (p === undefined) return undefined
    pending.delete(id)
    deadlines.remove(p)
    if (pending.size === 0) onEmpty?.()
    return p
  }
  return {
    get size() {
      return pending.size
    },
    forEach(fn) {
      for (const p of pending.values()) fn((p as PendingRequest).command, (p as PendingRequest).memo)
    },
    wait(command, at, memo) {
      if (command.deadline === undefined) {
        return Promise.reject(new OutpostError(ErrorCode.INVALID_ENVELOPE, 'a request needs a deadline'))
      }
      return new Promise<Envelope>((resolve, reject) => {
        const entry = new PendingRequest(command, at, resolve, reject, expired, memo)
        pending.set(command.id, entry)
        deadlines.add(entry)
      })
    },
    settle(reply) {
      if (reply.corr === undefined) return false
      const waiting = pending.get(reply.corr) as PendingRequest | undefined
      // A reply counts only from the device the command went to: anyone who saw the command's
      // id could answer it otherwise. The command keeps waiting for its real reply.
      if (waiting === undefined || (waiting.command.target !== undefined && reply.src !== waiting.command.target)) return false
      remove(reply.corr)
      waiting.resolve(reply)
      return true
    },
    fail(id, err) {
      remove(id)?.reject(err)
    },
    failAll(err) {
      for (const id of [...pending.keys()]) remove(id)?.reject(err)
    },
    drained(ms) {
      if (pending.size === 0) return Promise.resolve()
      return new Promise<void>((resolve) => {
        const t = setTimeout(done, ms)
        function done(): void {
          clearTimeout(t)
          onEmpty = undefined
          resolve()
        }
        onEmpty = done
      })
    },
  }
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

/** Something that must happen at a deadline unless removed first. */
export interface DeadlineEntry {
  deadline: number
  /** Set by the tracker while the entry is waiting; do not touch. */
  tracked?: boolean
  expire(): void
}

/** Tracks deadlines with one timer for all of them (a timer per call costs more than the call). */
export interface DeadlineTracker {
  add(entry: DeadlineEntry): void
  remove(entry: DeadlineEntry): void
  readonly size: number
}

/**
 * Creates a deadline tracker. Entries sit in an array (a Set of objects would give each one an
 * identity hash, which costs more than the rest of a call); removal only flags the entry, and
 * the array is compacted once flagged entries outnumber live ones. The single timer is armed
 * for the earliest deadline.
 */
export function createDeadlineTracker(now: () => number = Date.now): DeadlineTracker {
  let queue: DeadlineEntry[] = []
  let live = 0
  let timer: ReturnType<typeof setTimeout> | undefined
  let armedFor = Number.POSITIVE_INFINITY
  const arm = (at: number): void => {
    if (timer !== undefined) clearTimeout(timer)
    armedFor = at
    // Unref'd: a deadline alone does not keep a process alive (a connection or a handler does).
    timer = setTimeout(sweep, Math.max(0, at - now()))
    timer.unref?.()
  }
  const compact = (): void => {
    queue = queue.filter((e) => e.tracked === true)
  }
  const sweep = (): void => {
    timer = undefined
    armedFor = Number.POSITIVE_INFINITY
    const t = now()
    const due = queue
    queue = []
    let next = Number.POSITIVE_INFINITY
    for (const e of due) {
      if (e.tracked !== true) continue
      if (e.deadline <= t) {
        e.tracked = false
        live--
        e.expire()
      } else {
        queue.push(e)
        if (e.deadline < next) next = e.deadline
      }
    }
    if (next !== Number.POSITIVE_INFINITY && next < armedFor) arm(next)
  }
  return {
    add(entry) {
      entry.tracked = true
      queue.push(entry)
      live++
      if (entry.deadline < armedFor) arm(entry.deadline)
      if (queue.length > 2 * live + 1024) compact()
    },
    remove(entry) {
      // The armed timer stays: re-arming per call would cost a timer per call again. When it
      // fires with nothing due it re-arms for the earliest remaining deadline, if any.
      if (entry.tracked === true) {
        entry.tracked = false
        live--
      }
    },
    get size() {
      return live
    },
  }
}
