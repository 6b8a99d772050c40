import type { OutpostError } from '../errors.js'
import type { Job, QueueStore } from '../ports/queue-store.js'
import type { QueueRunStats, RunOutcome, RunnerQueue, RunningJob } from './runner-types.js'

// What the queue runner keeps of its queues and of the jobs it holds, shared by its parts
// (queue-runner.ts, settle.ts, lease-sweep.ts).

/**
 * A job whose worker runs now, and what its worker's context sees of it (RunningJob). A class:
 * one is made for every job, and a getter in an object literal costs a runtime call each time.
 */
export class Active implements RunningJob {
  /** Made when the worker first looks at its signal (most short jobs never do). */
  ac: AbortController | undefined = undefined
  /** Why it was aborted, kept for a signal made later. */
  abortedWith: unknown = undefined
  /** The result will be ignored (lease lost, cancelled, abandoned at shutdown). */
  abandoned = false
  timedOut = false
  /**
   * Its slot is given back and its attempt settled by the runner (a timed-out worker that did not
   * return): what the worker returns later is ignored.
   */
  released = false
  /** Aborted because the runtime stops: an unfinished attempt is given back, not counted. */
  stopping = false
  constructor(
    readonly q: QueueState,
    readonly job: Job,
    /** Wall-clock time the attempt started (moved with a step of the clock, like the lease). */
    public startedAt: number,
    /** performance.now() at start: how long attempts take, for `prefetch: 'auto'`. */
    readonly began: number,
    public renewedAt: number,
    public leaseUntil: number,
    /** The runner's heartbeat (extends the lease, records progress). */
    private readonly beat: (a: Active, progress: unknown) => boolean,
  ) {}
  get signal(): AbortSignal {
    return signalOf(this)
  }
  heartbeat(progress?: unknown): boolean {
    return this.beat(this, progress)
  }
}

/** A job leased ahead, waiting for a free worker slot. */
export interface Buffered {
  job: Job
  renewedAt: number
}

/**
 * Gives back, without counting an attempt, the jobs of `q` leased ahead whose leases ran out
 * before they began: the process stood still (SIGSTOP, a suspended VM, a blocked event loop) for
 * longer than a lease. Left in place, they were leased again as run-out leases, an attempt more
 * each time, and after `maxAttempts` such stops dead-lettered as LEASE_LOST without having run.
 * Call inside a store transaction; nothing to do costs one comparison per buffered job.
 */
export function giveBackRunOut(q: QueueState, now: number, store: Pick<QueueStore, 'release'>): void {
  if (q.buffer.some((b) => b.job.leaseUntil! <= now)) q.buffer = q.buffer.filter((b) => b.job.leaseUntil! > now || void store.release(b.job.id, b.job.attempt, now))
}

/** One queue as the runner keeps it. */
export interface QueueState {
  def: RunnerQueue
  /** Recent attempt duration, ms (moving average), for `prefetch: 'auto'`. */
  avgMs: number
  active: Set<Active>
  buffer: Buffered[]
  /** A lease should be tried at the next tick. */
  wanted: boolean
  /** fill() is starting buffered jobs (a worker that finishes at once must not start another fill). */
  filling: boolean
  cancelTimer?: () => void
  stats: QueueRunStats
}

/** An attempt that finished, waiting for the next commit. */
export interface Settlement {
  q: QueueState
  job: Job
  outcome: RunOutcome
}

/** What a settlement came to, counted once its savepoint committed. */
export type Settled = 'completed' | 'retried' | 'dead' | 'stale'

/** Aborts a running job's signal (once; a signal made later starts aborted). */
export function abort(a: Active, reason: OutpostError): void {
  if (a.abortedWith !== undefined) return
  a.abortedWith = reason
  a.ac?.abort(reason)
}

/** The signal of a running job, made on first use. */
export function signalOf(a: Active): AbortSignal {
  if (a.ac === undefined) {
    a.ac = new AbortController()
    if (a.abortedWith !== undefined) a.ac.abort(a.abortedWith)
  }
  return a.ac.signal
}

/** Gives up on a running job's result (lease lost, cancelled, shutdown) and aborts it. */
export function abandon(a: Active, reason: OutpostError): void {
  if (a.abandoned) return
  a.abandoned = true
  abort(a, reason)
}
