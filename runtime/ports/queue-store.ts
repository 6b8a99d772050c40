import type { DeviceTransaction } from './device-transaction.js'

/** Where a job is in its life. Delayed jobs are `ready` with `runAt` in the future. */
export type JobState = 'ready' | 'leased' | 'completed' | 'dead'

/** One job as the store keeps it. */
export interface Job {
  id: string
  queue: string
  state: JobState
  payload: unknown
  /** Higher runs first. */
  priority: number
  /** Not before this time, epoch ms (delays and retry backoff). */
  runAt: number
  /** Leases handed out so far; a lease is identified by (id, attempt). */
  attempt: number
  /** While leased: when the lease ends unless extended. */
  leaseUntil?: number
  idempotencyKey?: string
  /** Carried by the job's result events. */
  correlationId?: string
  traceparent?: string
  createdAt: number
  updatedAt: number
  output?: unknown
  /** Last failure, or why it was dead-lettered. */
  error?: string
  /** Stable code of the last failure (an ErrorCode, or the worker's own). */
  errorCode?: string
  /** Why a dead job is dead (`failed`, `attempts`, `retryWindow`, `cancelled`, `invalid`). */
  deadReason?: string
  progress?: unknown
}

export interface EnqueueInput {
  queue: string
  payload: unknown
  /** A second enqueue with the same key (per queue) returns the first job instead. */
  idempotencyKey?: string
  priority?: number
  /** Delay: not before this time. */
  runAt?: number
  correlationId?: string
  traceparent?: string
  /** Input that can never run (it fails the queue's schema): stored straight into the dead letters, with this message. */
  invalid?: string
}

/** Counts of one queue. */
export interface QueueMetrics {
  ready: number
  delayed: number
  leased: number
  completed: number
  dead: number
  /** Age of the oldest job ready to run now, ms (0 when none). */
  oldestReadyAgeMs: number
}

/** Details of a failure recorded with `retry` or `moveToDead`. */
export interface FailureInfo {
  code?: string
  /** Why it is dead (moveToDead only). */
  reason?: string
}

/**
 * Durable jobs. Every verb commits before it returns (or with the enclosing `transaction.run`).
 *
 * - Leasing hands out ready jobs (and jobs whose lease expired: crash recovery needs no
 *   manual step) by priority, then due time, then age, counting one attempt each. A paused
 *   queue hands out nothing.
 * - A lease is identified by (job id, attempt). Verbs on a lease that is no longer current
 *   (expired and re-leased, the job finished or was cancelled) change nothing and return false.
 * - Idempotency keys are unique per queue, enforced by the store.
 * - Deliberately left out: scheduling workers, backoff arithmetic and result events. Those
 *   live in the runtime; the store only records decisions.
 */
export interface QueueStore {
  /** @returns the job, and whether it was created (false: the idempotency key already existed). */
  enqueue(input: EnqueueInput, now: number): { job: Job; created: boolean }
  /** Several enqueues in one commit, in order. */
  enqueueMany(inputs: EnqueueInput[], now: number): { job: Job; created: boolean }[]
  /**
   * Up to `limit` jobs of a queue, leased until `now + leaseMs`, in the order they should run. A
   * store may add a few jobs whose leases ran out (a process that died) beyond `limit`, so that
   * they are not left behind a queue whose ready jobs always fill it.
   */
  lease(queue: string, limit: number, now: number, leaseMs: number): Job[]
  /** Extends a current lease (and records progress). */
  heartbeat(id: string, attempt: number, now: number, leaseMs: number, progress?: unknown): boolean
  complete(id: string, attempt: number, output: unknown, now: number): boolean
  /** Back to ready, not before `runAt`. */
  retry(id: string, attempt: number, runAt: number, error: string, now: number, info?: FailureInfo): boolean
  /** Gives a leased job up without counting it as an attempt (shutdown, a lease run out before the job began): ready again, in its place (its due time, if past, kept). */
  release(id: string, attempt: number, now: number): boolean
  moveToDead(id: string, attempt: number, error: string, now: number, info?: FailureInfo): boolean
  /** A job that is ready or leased goes to the dead letters (reason `cancelled`). @returns the job as it is now, if it exists */
  cancel(id: string, now: number): Job | undefined
  get(id: string): Job | undefined
  listDead(queue: string, limit: number): Job[]
  /** Dead jobs (all of the queue, or the given ids) back to ready with attempts reset. @returns how many */
  redrive(queue: string, now: number, ids?: string[]): number
  /** Deletes the queue's jobs in a state. @returns how many */
  purge(queue: string, state: JobState): number
  /** Deletes completed jobs last changed before `before`. @returns how many */
  pruneCompleted(queue: string, before: number): number
  /** Stops (true) or resumes (false) leasing from a queue; kept across restarts. */
  setPaused(queue: string, paused: boolean): void
  isPaused(queue: string): boolean
  /** Every queue that has jobs or a pause state (or, in the SQLite store, has ever completed a job: its count is kept). */
  queues(): string[]
  metrics(queue: string, now: number): QueueMetrics
  /** Earliest time a job of the queue becomes leasable (due or lease expiry), if any. */
  nextDueAt(queue: string): number | undefined
  /**
   * The wall clock stepped by `step` ms (> 0 forward, < 0 back) while the runtime ran; `now` is
   * after the step. The queue's waiting and leased jobs last changed before the step keep what
   * was left of their delay and their lease, and their age: a lease held while the clock jumped
   * forward does not run out, a retry due in a minute is not put off for years by a step back,
   * a job already due stays due. Not the hot path: called once per step.
   * @returns how many jobs changed
   */
  clockStepped(queue: string, step: number, now: number): number
  /**
   * At start: the queue's waiting and leased jobs last changed after `now` (the clock was set
   * back while the device was off) count their delay, their lease and their age from `now`, as
   * if last changed now, rather than wait for the clock to catch up with them.
   * @returns how many jobs changed
   */
  rebaseAhead(queue: string, now: number): number
  /**
   * The device transaction this store writes in, given at construction: verbs called inside
   * `transaction.run` commit together (and with what other stores built with the same
   * transaction wrote there: the outbox, for a job's completion and its result event).
   */
  readonly transaction: DeviceTransaction
}
