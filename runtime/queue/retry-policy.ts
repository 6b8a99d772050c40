import { backoffDelay } from '../backoff.js'
import type { DeadReason, QueueSpec, ResultDelivery, RetryBackoff } from '../contract/queue.js'

/** A queue's policy with every default filled in. */
export interface QueuePolicy {
  leaseMs: number
  /** 0: the worker renews its lease itself. */
  heartbeatMs: number
  timeoutMs: number | undefined
  maxAttempts: number
  retryWindowMs: number | undefined
  backoff: Required<RetryBackoff>
  concurrency: number
  /** Jobs leased ahead of a free worker slot (so one commit covers more than `concurrency` jobs); 'auto' adapts to how long jobs take. */
  prefetch: number | 'auto'
  priority: number
  results: ResultDelivery
  keepCompletedMs: number
}

/** Fills in a queue's defaults (documented on QueueSpec). */
export function queuePolicy(spec: QueueSpec): QueuePolicy {
  const leaseMs = spec.leaseMs ?? 30_000
  const concurrency = spec.concurrency ?? 1
  return {
    leaseMs,
    heartbeatMs: spec.heartbeatMs ?? Math.floor(leaseMs / 3),
    timeoutMs: spec.timeoutMs,
    maxAttempts: spec.maxAttempts ?? 5,
    retryWindowMs: spec.retryWindowMs,
    backoff: { initialMs: spec.backoff?.initialMs ?? 1_000, maxMs: spec.backoff?.maxMs ?? 300_000, factor: spec.backoff?.factor ?? 2 },
    concurrency,
    prefetch: spec.prefetch ?? 'auto',
    priority: spec.priority ?? 0,
    results: spec.results ?? 'required',
    keepCompletedMs: spec.keepCompletedMs ?? 24 * 3_600_000,
  }
}

/**
 * What follows a failed attempt: another one at `retryAt` (the worker's delay, or exponential
 * backoff with jitter), or the dead letters when attempts or the retry window are used up.
 */
export function afterFailure(
  job: { attempt: number; createdAt: number },
  policy: QueuePolicy,
  now: number,
  delayMs?: number,
  random: () => number = Math.random,
): { retryAt: number } | { dead: DeadReason } {
  if (job.attempt >= policy.maxAttempts) return { dead: 'attempts' }
  const retryAt = now + Math.max(0, delayMs ?? backoffDelay(job.attempt, policy.backoff, random))
  if (policy.retryWindowMs !== undefined && retryAt - job.createdAt > policy.retryWindowMs) return { dead: 'retryWindow' }
  return { retryAt }
}
