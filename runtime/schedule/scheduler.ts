import type { Logger } from 'pino'
import type { Occurrence, ScheduleSpec } from '../contract/service.js'
import { watchClock, type Clock } from '../ports/clock.js'
import type { StateStore } from '../ports/state-store.js'
import { errorMessage } from '../errors.js'
import { createLogLimiter } from '../log-limiter.js'

/** Scope in the state store where each schedule's last fired occurrence is kept. */
export const SCHEDULE_STATE_SCOPE = '$schedules'

/** Most missed occurrences looked at when a device comes back (beyond that they are only counted as skipped). */
const MISSED_SCAN_LIMIT = 10_000
/**
 * Longest a schedule's timer waits before it looks at the clock again. Timers wait on monotonic
 * time; a step of the wall clock (an NTP sync, a clock set back) is seen within this long, and a
 * cron slot is then fired at its new time, not the step's length away.
 */
const MAX_WAIT_MS = 60_000
/** A timer that finds the clock this far before the time it was set for: the clock was set back. */
const STEP_BACK_MS = 1_000

/** One schedule of one hosted service, ready to run. */
export interface ScheduledJob {
  service: string
  name: string
  spec: ScheduleSpec
  /** Emits the event of one occurrence. */
  fire(occurrence: Occurrence): Promise<void>
}

/** Counters of the scheduler. */
export interface SchedulerStats {
  fired: number
  /** Occurrences missed while the device was off and not fired (misfire policy). */
  skipped: number
  /** Occurrences whose event could not be emitted. */
  failed: number
  /** Writes of the last fired occurrence that storage refused (busy, full); a later one replaces them. */
  unsaved: number
}

export interface Scheduler {
  start(): void
  stop(): void
  stats(): SchedulerStats
}

/** The `code` a thrown value carries (an OutpostError's, SQLite's), if it is a string. */
function codeOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null | undefined)?.code
  return typeof code === 'string' ? code : undefined
}

/** Next occurrence strictly after `after`, or undefined when the schedule has no more. */
const nextOf = (spec: ScheduleSpec): ((after: number) => number | undefined) => (after) => spec.timing.next(after)

/**
 * Runs schedules on a clock. On start, each schedule looks up the last occurrence it fired
 * (persisted in the state store) and applies its misfire policy to what it missed since; then it
 * fires each occurrence when due, persisting it as the last fired.
 */
export function createScheduler(opts: { jobs: ScheduledJob[]; clock: Clock; store: StateStore; log: Logger }): Scheduler {
  const { clock, store, log } = opts
  const stats: SchedulerStats = { fired: 0, skipped: 0, failed: 0, unsaved: 0 }
  // One timer per schedule at a time (a list of every timer ever set would grow for ever).
  const timers = new Map<ScheduledJob, () => void>()
  const watch = watchClock(clock)
  let running = false

  const occurrence = (job: ScheduledJob, at: number): Occurrence => ({ id: `${job.service}/${job.name}/${at}`, at, schedule: job.name })
  const key = (job: ScheduledJob): string => `${job.service}/${job.name}`

  const limited = createLogLimiter(log, { clock })
  /**
   * Persists the last occurrence handled. Runs from timers, so it never throws: a write storage
   * refuses (busy past its wait, a full disk) is logged at a bounded rate, and the next
   * occurrence writes a later one. Until then a restart may fire this occurrence again (its id
   * is the same, so receivers drop the duplicate).
   */
  const remember = (job: ScheduledJob, last: number): void => {
    try {
      store.set(SCHEDULE_STATE_SCOPE, key(job), { last })
    } catch (err) {
      stats.unsaved++
      const code = codeOf(err)
      limited.warn(`unsaved:${code ?? 'INTERNAL'}`, { schedule: key(job), at: last, code }, `schedule state not stored: ${errorMessage(err)}`)
    }
  }

  const fire = (job: ScheduledJob, at: number): void => {
    stats.fired++
    remember(job, at)
    let emitted: Promise<void>
    try {
      emitted = job.fire(occurrence(job, at))
    } catch (err) {
      emitted = Promise.reject(err)
    }
    emitted.catch((err: unknown) => {
      stats.failed++
      const code = codeOf(err)
      limited.warn(`failed:${code ?? 'INTERNAL'}`, { schedule: key(job), at, code, err: errorMessage(err) }, 'scheduled event not emitted')
    })
  }

  /**
   * Occurrences after `from` up to `now`, walking at most `limit` of them: the latest `keep`
   * (oldest first), how many there are, and where the walk stopped when it hit the limit.
   */
  const walk = (next: (after: number) => number | undefined, from: number, now: number, limit: number, keep: number): { latest: number[]; count: number; stoppedAt?: number } => {
    const latest: number[] = []
    let count = 0
    for (let at = next(from); at !== undefined && at <= now; at = next(at)) {
      if (count === limit) return { latest, count, stoppedAt: latest.at(-1) ?? from }
      count++
      latest.push(at)
      // Trimmed in batches: shifting one off a long array at every step costs a copy each time.
      if (latest.length >= 2 * keep + 64) latest.splice(0, latest.length - keep)
    }
    if (latest.length > keep) latest.splice(0, latest.length - keep)
    return { latest, count }
  }

  const catchUp = (job: ScheduledJob, next: (after: number) => number | undefined, last: number, now: number): void => {
    if (last > now + STEP_BACK_MS) {
      // Fired at a time still to come: the clock was set back while the device was off (a dead
      // RTC battery, a device that boots at 1970). Nothing can be known missed; the schedule
      // goes on from the time the clock says now.
      log.warn({ schedule: key(job), last, now }, 'the clock is behind the last occurrence fired (it was set back); the schedule goes on from the current time')
      return
    }
    const policy = job.spec.misfire
    // At least one kept: the latest missed occurrence is remembered as handled.
    const keep = Math.max(1, policy === 'skip' ? 0 : policy === 'runOnce' ? 1 : Math.min(policy.backfill, MISSED_SCAN_LIMIT))
    let { latest, count: total, stoppedAt } = walk(next, last, now, MISSED_SCAN_LIMIT, keep)
    if (stoppedAt !== undefined) {
      // More missed than are worth walking (a clock that jumped from 1970 to today, a long
      // outage of a short interval): the latest ones are looked for near now, and the ones
      // between only counted, from the average spacing of those walked.
      const spacing = Math.max(1, (stoppedAt - last) / total)
      let from = Math.max(stoppedAt, now - spacing * (keep + 1))
      let found: { latest: number[]; count: number; from: number } | undefined
      for (let tries = 0; tries < 40; tries++) {
        const tail = walk(next, from, now, 2 * MISSED_SCAN_LIMIT, keep)
        if (tail.stoppedAt !== undefined) {
          // Denser near now than on average (a cron pattern): closer.
          from = now - Math.floor((now - from) / 2)
          continue
        }
        found = { latest: tail.latest, count: tail.count, from }
        if (tail.latest.length >= keep || from <= stoppedAt) break
        from = Math.max(stoppedAt, now - 2 * (now - from)) // sparser: further back
      }
      latest = found?.latest ?? []
      total += found === undefined ? 0 : Math.max(0, Math.round((found.from - stoppedAt) / spacing)) + found.count
    }
    if (total === 0) return
    const toFire = policy === 'skip' ? [] : latest.slice(-Math.min(keep, latest.length))
    stats.skipped += total - toFire.length
    log.info({ schedule: key(job), missed: total, firing: toFire.length, policy }, 'schedule missed occurrences while the device was off')
    for (const at of toFire) fire(job, at)
    // The latest missed occurrence counts as handled either way: it is not offered again.
    remember(job, latest.at(-1) ?? now)
  }

  /** The wall clock stepped (seen by a schedule's timer): one line a minute at most. */
  const stepped = (step: number): void => {
    limited.warn('clock-stepped', { stepMs: step }, `the wall clock stepped ${step > 0 ? 'forward' : 'back'} by ${Math.abs(step)} ms; schedules go on from the new time`)
  }

  /** Arms the schedule's next occurrence after `after`. */
  const arm = (job: ScheduledJob, next: (after: number) => number | undefined, after: number): void => {
    const at = next(after)
    if (at === undefined || !running) return
    wait(job, next, at)
  }

  /** Waits for `at` (looking at the clock at least every MAX_WAIT_MS), then fires it. */
  const wait = (job: ScheduledJob, next: (after: number) => number | undefined, at: number): void => {
    const wake = Math.min(at, clock.now() + MAX_WAIT_MS)
    timers.set(
      job,
      clock.setTimer(wake, () => {
        timers.delete(job)
        if (!running) return
        const now = clock.now()
        const step = watch.step(now)
        if (step !== 0) stepped(step)
        // Set back while waiting: `at` is now (maybe years) ahead; the next occurrence after
        // the new time is armed instead, so the schedule keeps its interval.
        if (now < wake - STEP_BACK_MS) return arm(job, next, now)
        if (now < at) return wait(job, next, at)
        fire(job, at)
        // Set forward: one occurrence fired late, then the next one after the new time (no
        // catch-up of what the step skipped).
        arm(job, next, Math.max(at, now - 1))
      }),
    )
  }

  return {
    start() {
      if (running) return
      running = true
      const now = clock.now()
      watch.step(now)
      for (const job of opts.jobs) {
        const next = nextOf(job.spec)
        const saved = store.get(SCHEDULE_STATE_SCOPE, key(job)) as { last?: number } | undefined
        if (typeof saved?.last !== 'number') {
          remember(job, now) // first start: nothing was missed
          arm(job, next, now)
          continue
        }
        // What was missed while the device was off is fired on the clock's next turn, not inside
        // start() (each occurrence is an event emitted and a write: 1.8 ms of a device's start
        // here), as queue workers take their first jobs on the next turn: a device says it is
        // ready without waiting for them. The schedule's own timer is armed after them, from the
        // same time, so they keep their order; a stop before that turn leaves them to the next start.
        const last = saved.last
        timers.set(
          job,
          clock.setTimer(now, () => {
            timers.delete(job)
            if (!running) return
            catchUp(job, next, last, now)
            arm(job, next, now)
          }),
        )
      }
    },
    stop() {
      running = false
      for (const cancel of timers.values()) cancel()
      timers.clear()
    },
    stats: () => ({ ...stats }),
  }
}
