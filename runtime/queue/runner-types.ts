import type { WireError } from '../errors.js'
import type { DeadReason, ResultKind } from '../contract/queue.js'
import type { Job } from '../ports/queue-store.js'
import type { QueuePolicy } from './retry-policy.js'

// What the queue runner (queue-runner.ts) and the service layer that feeds it
// (service-queues.ts) agree on: how an attempt ended, a running job as its worker sees it, a
// declared queue bound to its worker, and a queue's counters.

/** How one attempt ended, as the runtime saw the worker finish. */
export type RunOutcome =
  | { kind: 'completed'; output: unknown }
  | { kind: 'retry'; error: WireError; delayMs?: number }
  | { kind: 'fail'; error: WireError; reason?: DeadReason }

/** A job being worked on, as its worker's context sees it. */
export interface RunningJob {
  readonly job: Job
  /** Aborts on lease loss, cancellation, the queue's timeout and shutdown. */
  readonly signal: AbortSignal
  /** Extends the lease now, recording `progress`. @returns false when the lease is lost */
  heartbeat(progress?: unknown): boolean
}

/** The result events of one queue, as the runner asks for them (named by `resultEventNames`). */
export type { ResultKind }

/** One declared queue, bound to its worker. */
export interface RunnerQueue {
  /** Name in the store (`<service>/<queue>`). */
  key: string
  /** Name in result events (`<queue>`). */
  name: string
  policy: QueuePolicy
  /** True when the queue declares a progress schema (so `<queue>.progress` exists). */
  reportsProgress: boolean
  /** Runs the worker: its outcome, at once when the worker returned a value; never throws or rejects. */
  run(running: RunningJob): RunOutcome | Promise<RunOutcome>
  /** Stores `<queue>.<kind>` for delivery. @throws when it cannot be stored (rolls a `required` settlement back) */
  result(kind: ResultKind, payload: Record<string, unknown>, job: Job): void
}

/** Counters of one queue on this runtime. */
export interface QueueRunStats {
  started: number
  completed: number
  retried: number
  dead: number
  /** Attempts whose result was ignored: lease lost, cancelled, or given back at shutdown. */
  abandoned: number
  /** Result events that could not be stored (bestEffort, or required after retries). */
  resultsFailed: number
}
