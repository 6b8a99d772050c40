import { ErrorCode, OutpostError } from '../errors.js'

// A service's schedules as declared: when they fire, what they emit, what to do with missed
// occurrences. The typed builder that makes them is ScheduleBuilder (service.ts). When a schedule
// fires is a Timing: `every(ms)` here, `cron(pattern)` in cron.ts. Cron patterns are read by
// croner (33 KB minified), so it is imported by cron.ts alone: a device bundle carries it only
// when one of its services declares a cron schedule.

/** When a schedule misses occurrences (the device was off): fire none, the latest once, or up to `backfill` of the latest, oldest first. */
export type MisfirePolicy = 'skip' | 'runOnce' | { backfill: number }

/** One occurrence of a schedule. `id` is deterministic: `<service>/<schedule>/<epoch ms>`. */
export interface Occurrence {
  id: string
  /** When it was due, epoch ms. */
  at: number
  schedule: string
}

/** When a schedule fires: `every(ms)` or `cron(pattern, { timezone })`. */
export interface Timing {
  /** The next occurrence strictly after `after` (epoch ms), or undefined when there is none. */
  next(after: number): number | undefined
  /** The cron pattern, for a cron timing. */
  readonly cron?: string
  /** The IANA timezone a cron pattern is read in (UTC when absent). */
  readonly timezone?: string
  /** The interval, for an `every` timing. */
  readonly everyMs?: number
}

/** A declared schedule: when it fires and which of the service's events it emits. */
export interface ScheduleSpec {
  readonly timing: Timing
  /** The timing's cron pattern, when it has one. */
  readonly cron?: string
  readonly timezone?: string
  /** The timing's interval, when it has one. */
  readonly everyMs?: number
  readonly event: string
  readonly payload: (occurrence: Occurrence) => unknown
  readonly misfire: MisfirePolicy
}

/**
 * Fires every `ms` milliseconds, aligned to multiples of `ms` since the epoch (so occurrence ids
 * repeat across restarts).
 * @throws INVALID_CONFIG for an interval that is not a positive whole number
 */
export function every(ms: number): Timing {
  if (!Number.isInteger(ms) || ms < 1) throw new OutpostError(ErrorCode.INVALID_CONFIG, `schedule interval must be a positive whole number of ms (got ${ms})`)
  return { everyMs: ms, next: (after) => (Math.floor(after / ms) + 1) * ms }
}

const isTiming = (t: unknown): t is Timing => typeof t === 'object' && t !== null && typeof (t as Timing).next === 'function'

/**
 * A schedule on `timing` that emits `event`.
 * @throws INVALID_CONFIG for something that is not a timing (a cron pattern given as a string, say), or a bad misfire policy
 */
export function scheduleSpec(timing: Timing, event: string, payload: ScheduleSpec['payload'], opts?: { misfire?: MisfirePolicy }): ScheduleSpec {
  if (!isTiming(timing)) {
    const hint = typeof timing === 'string' ? ` (for a cron pattern: s.at(cron(${JSON.stringify(timing)}), …) with cron from 'outpost/contracts')` : ''
    throw new OutpostError(ErrorCode.INVALID_CONFIG, `a schedule's timing must be every(ms) or cron(pattern)${hint}`)
  }
  const about: { cron?: string; timezone?: string; everyMs?: number } = {}
  if (timing.cron !== undefined) about.cron = timing.cron
  if (timing.timezone !== undefined) about.timezone = timing.timezone
  if (timing.everyMs !== undefined) about.everyMs = timing.everyMs
  return { timing, ...about, event, payload, misfire: checkMisfire(opts?.misfire) }
}

function checkMisfire(m: MisfirePolicy | undefined): MisfirePolicy {
  const policy = m ?? 'skip'
  if (typeof policy === 'object' && (!Number.isInteger(policy.backfill) || policy.backfill < 1)) {
    throw new OutpostError(ErrorCode.INVALID_CONFIG, `misfire backfill must be a positive whole number (got ${String(policy.backfill)})`)
  }
  return policy
}
