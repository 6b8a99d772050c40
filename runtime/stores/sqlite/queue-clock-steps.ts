import type { Database } from 'better-sqlite3'

/** What the queue store does when the wall clock steps (runtime/queue/clock-steps.ts decides when). */
export interface QueueClockSteps {
  /** Moves the times of `queue`'s jobs that can still run, changed before a step of `step` ms that ended at `now`. @returns rows moved */
  clockStepped(queue: string, step: number, now: number): number
  /** Jobs of `queue` last changed after `now` (the clock was set back while the device was off) count their delay and lease from `now`. @returns rows moved */
  rebaseAhead(queue: string, now: number): number
}

/**
 * The statements behind QueueStore's `clockStepped` and `rebaseAhead`, in the transaction `tx`.
 * Not the hot path: once per step, and at start. Only jobs that can still run carry times that
 * matter; completed and dead ones keep theirs. A step rewrites every waiting job of the queue.
 */
export function createQueueClockSteps(db: Database, tx: <T>(f: () => T) => T): QueueClockSteps {
  const stepReady = db.prepare(
    `UPDATE jobs SET run_at = CASE WHEN run_at > @low THEN run_at + @step ELSE run_at END, created_at = created_at + @step, updated_at = updated_at + @step
     WHERE queue = @queue AND state = 'ready' AND updated_at <= @before`,
  )
  const stepLeased = db.prepare(
    `UPDATE jobs SET lease_until = lease_until + @step, created_at = created_at + @step, updated_at = updated_at + @step
     WHERE queue = @queue AND state = 'leased' AND updated_at <= @before`,
  )
  const aheadReady = db.prepare(
    `UPDATE jobs SET run_at = @now + MAX(0, run_at - updated_at), created_at = @now - MAX(0, updated_at - created_at), updated_at = @now
     WHERE queue = @queue AND state = 'ready' AND updated_at > @now`,
  )
  const aheadLeased = db.prepare(
    `UPDATE jobs SET lease_until = @now + MAX(0, lease_until - updated_at), created_at = @now - MAX(0, updated_at - created_at), updated_at = @now
     WHERE queue = @queue AND state = 'leased' AND updated_at > @now`,
  )

  return {
    clockStepped: (queue, step, now) =>
      tx(() => {
        // Rows changed before the step carry times of the old clock (changed at `now - step` or
        // earlier). Due times past both clocks' `now` move; one already due stays due.
        const before = now - step
        const low = Math.min(now, before)
        return stepReady.run({ queue, step, before, low }).changes + stepLeased.run({ queue, step, before }).changes
      }),
    rebaseAhead: (queue, now) => tx(() => aheadReady.run({ queue, now }).changes + aheadLeased.run({ queue, now }).changes),
  }
}
