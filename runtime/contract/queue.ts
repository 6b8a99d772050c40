import * as v from 'valibot'
import { ErrorCode, isOutpostError, OutpostError } from '../errors.js'
import type { Schema } from './schema.js'

/** Exponential backoff between attempts of a job (random jitter is always applied). */
export interface RetryBackoff {
  /** Delay after the first failed attempt, ms (default 1 000). */
  initialMs?: number
  /** Largest delay, ms (default 300 000). */
  maxMs?: number
  /** Growth per attempt (default 2). */
  factor?: number
}

/**
 * How a job's result events relate to its acknowledgement:
 * - `required`: the job counts as done only together with its result event in the outbox
 *   (one transaction); a device that dies in between runs the job again.
 * - `bestEffort`: the result event is stored in the same commit when it can be; if it cannot,
 *   that is logged and counted, and the job stays done.
 * - `none`: the queue declares and emits no result events (nobody listens; status is in the
 *   operations API).
 */
export type ResultDelivery = 'required' | 'bestEffort' | 'none'

/** A durable queue's declaration: what a job takes and gives, and its lease and retry policy. */
export interface QueueSpec<P extends Schema = Schema, R extends Schema = Schema, G extends Schema | undefined = Schema | undefined> {
  description?: string
  payload: P
  result: R
  /** Schema of what a worker reports through `ctx.heartbeat(progress)`; declares the `<queue>.progress` event. */
  progress?: G
  /** How long a leased job is held before another attempt may take it, ms (default 30 000). */
  leaseMs?: number
  /**
   * The runtime renews the lease of a running job every `heartbeatMs` (default leaseMs / 3),
   * so only a dead or frozen process loses it. 0: the worker must call `ctx.heartbeat()`.
   */
  heartbeatMs?: number
  /**
   * An attempt that runs longer is aborted (signal) and counted as failed (default: no limit). A
   * worker that does not return once aborted gives its slot back a lease sweep later (at most a
   * quarter of the timeout): the attempt fails with TIMEOUT, what the worker returns later is
   * ignored, and it may still be running while the next attempt does.
   */
  timeoutMs?: number
  /** Attempts before a job is dead-lettered (default 5). */
  maxAttempts?: number
  /** No new attempt once this long has passed since the job was enqueued, ms (default: no limit). */
  retryWindowMs?: number
  backoff?: RetryBackoff
  /** Jobs of this queue running at once on one device (default 1). */
  concurrency?: number
  /**
   * Jobs leased ahead of a free worker, so one commit settles and leases many short jobs.
   * Default `'auto'`: as many as `concurrency` while jobs take long, up to 128 while they finish
   * within a few milliseconds. A job leased ahead counts an attempt if the device dies before
   * running it.
   */
  prefetch?: number | 'auto'
  /** Priority of a job enqueued without one; higher runs first (default 0). */
  priority?: number
  /** Default `required`. */
  results?: ResultDelivery
  /** How long completed jobs stay inspectable before they are deleted, ms (default 24 h). */
  keepCompletedMs?: number
}

/** Payload of `<queue>.completed`. */
export interface JobCompleted<O> {
  jobId: string
  queue: string
  attempt: number
  output: O
}

/** Payload of `<queue>.failed`: an attempt failed and the job will be tried again at `retryAt`. */
export interface JobFailed {
  jobId: string
  queue: string
  attempt: number
  error: { code: string; message: string }
  retryAt: number
}

/** Why a job was dead-lettered. */
export type DeadReason = 'failed' | 'attempts' | 'retryWindow' | 'cancelled' | 'invalid'

/** Payload of `<queue>.dead`: the job was given up and lies in the dead letters. */
export interface JobDead {
  jobId: string
  queue: string
  attempt: number
  reason: DeadReason
  error: { code: string; message: string }
}

/** Payload of `<queue>.progress`. */
export interface JobProgress<G> {
  jobId: string
  queue: string
  attempt: number
  progress: G
}

/** Queues of `Q` that publish result events (all but `results: 'none'`). */
type Publishing<Q extends Record<string, QueueSpec>> = { [K in keyof Q & string]: Q[K]['results'] extends 'none' ? never : K }[keyof Q & string]

/** The result events a queue declares, by name. */
export type ResultEvents<Q extends Record<string, QueueSpec>> = {
  [K in Publishing<Q> as `${K}.completed`]: v.GenericSchema<JobCompleted<v.InferInput<Q[K]['result']>>, JobCompleted<v.InferOutput<Q[K]['result']>>>
} & {
  [K in Publishing<Q> as `${K}.failed`]: v.GenericSchema<JobFailed>
} & {
  [K in Publishing<Q> as `${K}.dead`]: v.GenericSchema<JobDead>
} & {
  [K in Publishing<Q> as Q[K]['progress'] extends Schema ? `${K}.progress` : never]: v.GenericSchema<
    JobProgress<v.InferInput<NonNullable<Q[K]['progress']>>>,
    JobProgress<v.InferOutput<NonNullable<Q[K]['progress']>>>
  >
}

/** Suffixes of the events the runtime emits for a queue. */
export const RESULT_EVENT_SUFFIXES = ['completed', 'failed', 'dead', 'progress'] as const

/** Kinds of a queue's result events. */
export type ResultKind = (typeof RESULT_EVENT_SUFFIXES)[number]

/** The names of a queue's result events by kind (`<queue>.completed`, …): the one place they are built. */
export function resultEventNames(queue: string): Readonly<Record<ResultKind, string>> {
  return { completed: `${queue}.completed`, failed: `${queue}.failed`, dead: `${queue}.dead`, progress: `${queue}.progress` }
}

const wireError = v.object({ code: v.string(), message: v.string() })

/** The event schemas of one queue's results (what subscribers validate against); none for `results: 'none'`. */
export function resultEventSchemas(name: string, spec: QueueSpec): Record<string, Schema> {
  if (spec.results === 'none') return {}
  const head = { jobId: v.string(), queue: v.string(), attempt: v.number() }
  const names = resultEventNames(name)
  const events: Record<string, Schema> = {
    [names.completed]: v.object({ ...head, output: spec.result }),
    [names.failed]: v.object({ ...head, error: wireError, retryAt: v.number() }),
    [names.dead]: v.object({ ...head, reason: v.picklist(['failed', 'attempts', 'retryWindow', 'cancelled', 'invalid']), error: wireError }),
  }
  if (spec.progress !== undefined) events[names.progress] = v.object({ ...head, progress: spec.progress })
  return events
}

const positive = (what: string, n: number | undefined, allowZero = false): void => {
  if (n === undefined) return
  if (!Number.isFinite(n) || n < 0 || (!allowZero && n === 0)) {
    throw new OutpostError(ErrorCode.INVALID_CONFIG, `${what} must be a ${allowZero ? 'non-negative' : 'positive'} number (got ${n})`)
  }
}

/** Checks a queue's numbers once, at declaration. @throws INVALID_CONFIG */
export function checkQueueSpec(name: string, spec: QueueSpec): void {
  const at = `queue "${name}"`
  positive(`${at} leaseMs`, spec.leaseMs)
  positive(`${at} heartbeatMs`, spec.heartbeatMs, true)
  positive(`${at} timeoutMs`, spec.timeoutMs)
  positive(`${at} retryWindowMs`, spec.retryWindowMs)
  positive(`${at} keepCompletedMs`, spec.keepCompletedMs, true)
  positive(`${at} backoff.initialMs`, spec.backoff?.initialMs, true)
  positive(`${at} backoff.maxMs`, spec.backoff?.maxMs, true)
  positive(`${at} backoff.factor`, spec.backoff?.factor)
  const prefetch = spec.prefetch === 'auto' ? undefined : spec.prefetch
  for (const [what, n, min] of [['maxAttempts', spec.maxAttempts, 1], ['concurrency', spec.concurrency, 1], ['prefetch', prefetch, 0]] as const) {
    if (n !== undefined && (!Number.isInteger(n) || n < min)) {
      throw new OutpostError(ErrorCode.INVALID_CONFIG, `${at} ${what} must be a whole number of at least ${min} (got ${n})`)
    }
  }
  const leaseMs = spec.leaseMs ?? 30_000
  if (spec.heartbeatMs !== undefined && spec.heartbeatMs > 0 && spec.heartbeatMs >= leaseMs) {
    throw new OutpostError(ErrorCode.INVALID_CONFIG, `${at} heartbeatMs (${spec.heartbeatMs}) must be shorter than its leaseMs (${leaseMs})`)
  }
}

/**
 * What a worker decided instead of returning a result: try again (optionally after a delay)
 * or give up now (dead-letter). Return it, or throw it from deeper down. It is an OutpostError
 * like everything else that crosses a boundary: code JOB_RETRY or JOB_FAILED, `details` holding
 * the reason (and the delay of a retry), so it travels and logs as any Outpost error.
 */
export class JobDecision extends OutpostError {
  // The class's name as a literal (it survives minification); `err.name` stays 'OutpostError'.
  static override readonly name: string = 'JobDecision'
  readonly decision: 'retry' | 'fail'
  readonly reason: string
  readonly delayMs?: number
  constructor(decision: 'retry' | 'fail', reason: string, delayMs?: number) {
    super(decision === 'retry' ? ErrorCode.JOB_RETRY : ErrorCode.JOB_FAILED, reason, {
      details: delayMs === undefined ? { reason } : { reason, delayMs },
    })
    this.decision = decision
    this.reason = reason
    if (delayMs !== undefined) this.delayMs = delayMs
  }
}

/**
 * True when `x` is a worker's JobDecision: an OutpostError with code JOB_RETRY or JOB_FAILED and
 * the decision that code stands for (minification-safe: no class name is compared). Any other
 * error with those codes is not a decision; it fails the attempt as any thrown error does.
 */
export function isJobDecision(x: unknown): x is JobDecision {
  if (!isOutpostError(x)) return false
  const decision = (x as { decision?: unknown }).decision
  return (x.code === ErrorCode.JOB_RETRY && decision === 'retry') || (x.code === ErrorCode.JOB_FAILED && decision === 'fail')
}
