import type { LogLimiter } from '../log-limiter.js'
import { watchClock, type Clock } from '../ports/clock.js'
import type { QueueStore } from '../ports/queue-store.js'
import type { QueueState } from './runner-state.js'

/**
 * What the queue runner does about steps of the wall clock. Leases, delays, timeouts and the
 * heartbeat cadence are kept in wall-clock time (they are stored, and must mean something after
 * a restart), so a step would move them all at once: forward, every lease this runner holds runs
 * out and its running jobs are leased again while they run; back, renewals, timeouts and
 * retries wait for the clock to catch up, for years after a dead RTC battery. Instead the times
 * move with the step, held in memory at once and stored in the next transaction, before
 * anything in it compares a stored time with the clock.
 */
export interface ClockSteps {
  /** Looks whether the clock stepped since the last look (`now`: the clock, just read); one monotonic read when it did not. */
  check(now: number): void
  /**
   * Inside a store transaction, first: stores the steps seen and not stored yet, and at the
   * first call after start moves jobs last changed after `now` (the clock was set back while
   * the device was off) to count from now. Nothing to do: one comparison.
   */
  store(now: number): void
  /** The transaction `store` last ran in committed. */
  committed(): void
}

/** Creates the clock-step handling of a runner's queues. */
export function createClockSteps(deps: { store: QueueStore; clock: Clock; queues: readonly QueueState[]; notes: LogLimiter }): ClockSteps {
  const { store, clock, queues, notes } = deps
  const watch = watchClock(clock)
  /** Steps seen and not stored yet, ms. */
  let unstored = 0
  /** Jobs last changed after the clock's time at start are looked for once, in the first transaction. */
  let rebase = true
  // What the last `store` did, counted once its transaction commits.
  let storing = 0
  let rebasing = false
  let moved = 0

  return {
    check(now) {
      const step = watch.step(now)
      if (step === 0) return
      for (const q of queues) {
        for (const a of q.active) {
          a.startedAt += step
          a.renewedAt += step
          a.leaseUntil += step
          a.job.createdAt += step
          if (a.job.leaseUntil !== undefined) a.job.leaseUntil += step
        }
        for (const b of q.buffer) {
          b.renewedAt += step
          b.job.createdAt += step
          if (b.job.leaseUntil !== undefined) b.job.leaseUntil += step
        }
      }
      unstored += step
    },
    store(now) {
      if (unstored === 0 && !rebase) return
      storing = unstored
      rebasing = rebase
      moved = 0
      for (const q of queues) {
        if (rebasing) moved += store.rebaseAhead(q.def.key, now)
        if (storing !== 0) moved += store.clockStepped(q.def.key, storing, now)
      }
    },
    committed() {
      if (storing === 0 && !rebasing) return
      if (rebasing && moved > 0 && storing === 0) {
        notes.warn('clock-behind', { jobs: moved }, `${moved} jobs were last changed after the current time (the clock was set back); their delays and leases count from now`)
      } else if (storing !== 0) {
        notes.warn('clock-stepped', { stepMs: storing, jobs: moved }, `the wall clock stepped ${storing > 0 ? 'forward' : 'back'} by ${Math.abs(storing)} ms; ${moved} waiting and leased jobs keep their delays and leases`)
      }
      unstored -= storing
      storing = 0
      if (rebasing) rebase = rebasing = false
    },
  }
}
