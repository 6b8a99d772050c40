import type { Logger } from 'pino'
import type { Occurrence, ScheduleSpec } from '../contract/service.js'
import type { Clock } from '../ports/clock.js'
import type { StateStore } from '../ports/state-store.js'
import { errorMessage } from '../errors.js'
import { createLogLimiter } from '../log-limiter.js'

/** Scope in the state store where each schedule's last fired occurrence is kept. */
export const SCHEDULE_STATE_SCOPE = '$schedules'

/** Most missed occurrences looked at when a device comes back (beyond that they are only counted as skipped). */
const MISSED_SCAN_LIMIT = 10_000

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
  const cancels: (() => void)[] = []
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

  const catchUp = (job: ScheduledJob, next: (after: number) => number | undefined, last: number, now: number): void => {
    const missed: number[] = []
    let total = 0
    for (let at = next(last); at !== undefined && at <= now; at = next(at)) {
      total++
      missed.push(at)
      if (missed.length > MISSED_SCAN_LIMIT) missed.shift()
    }
    if (total === 0) return
    const policy = job.spec.misfire
    const keep = policy === 'skip' ? 0 : policy === 'runOnce' ? 1 : Math.min(policy.backfill, missed.length)
    const toFire = keep === 0 ? [] : missed.slice(-keep)
    stats.skipped += total - toFire.length
    log.info({ schedule: key(job), missed: total, firing: toFire.length, policy }, 'schedule missed occurrences while the device was off')
    for (const at of toFire) fire(job, at)
    // The latest missed occurrence counts as handled either way: it is not offered again.
    remember(job, missed.at(-1)!)
  }

  const arm = (job: ScheduledJob, next: (after: number) => number | undefined, after: number): void => {
    const at = next(after)
    if (at === undefined || !running) return
    cancels.push(
      clock.setTimer(at, () => {
        if (!running) return
        fire(job, at)
        arm(job, next, Math.max(at, clock.now() - 1))
      }),
    )
  }

  return {
    start() {
      if (running) return
      running = true
      const now = clock.now()
      for (const job of opts.jobs) {
        const next = nextOf(job.spec)
        const saved = store.get(SCHEDULE_STATE_SCOPE, key(job)) as { last?: number } | undefined
        if (typeof saved?.last === 'number') catchUp(job, next, saved.last, now)
        else remember(job, now) // first start: nothing was missed
        arm(job, next, now)
      }
    },
    stop() {
      running = false
      for (const cancel of cancels.splice(0)) cancel()
    },
    stats: () => ({ ...stats }),
  }
}
