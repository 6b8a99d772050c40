import { ErrorCode, OutpostError } from '../errors.js'
import { systemClock, type Clock } from '../ports/clock.js'
import type { Envelope } from '../wire/envelope.js'
import { createDeadlineTracker, type DeadlineEntry } from './deadline-tracker.js'

interface Pending extends DeadlineEntry {
  resolve(env: Envelope): void
  reject(err: OutpostError): void
}

/** One request waiting for its reply (a class: no closures allocated per request). */
class PendingRequest implements Pending {
  readonly deadline: number
  tracked = false
  due = 0
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

/** Creates the pending-reply table; deadlines are kept on `clock`. */
export function createPendingReplies(clock: Clock = systemClock): PendingReplies {
  const pending = new Map<string, Pending>()
  const deadlines = createDeadlineTracker(clock)
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
        deadlines.add(entry, at)
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

