import { Cron } from 'croner'
import { ErrorCode, errorMessage, OutpostError } from '../errors.js'

// A service's schedules as declared: when they fire, what they emit, what to do with missed
// occurrences. The typed builder that makes them is ScheduleBuilder (service.ts).

/** When a schedule misses occurrences (the device was off): fire none, the latest once, or up to `backfill` of the latest, oldest first. */
export type MisfirePolicy = 'skip' | 'runOnce' | { backfill: number }

/** One occurrence of a schedule. `id` is deterministic: `<service>/<schedule>/<epoch ms>`. */
export interface Occurrence {
  id: string
  /** When it was due, epoch ms. */
  at: number
  schedule: string
}

/** A declared schedule: when it fires and which of the service's events it emits. */
export interface ScheduleSpec {
  readonly cron?: string
  readonly timezone?: string
  readonly everyMs?: number
  readonly event: string
  readonly payload: (occurrence: Occurrence) => unknown
  readonly misfire: MisfirePolicy
}

/**
 * A schedule on a cron pattern (5–7 fields, croner syntax) in an IANA timezone (default UTC).
 * @throws INVALID_CONFIG for a pattern or timezone croner cannot use, or a bad misfire policy
 */
export function cronSchedule(pattern: string, event: string, payload: ScheduleSpec['payload'], opts?: { timezone?: string; misfire?: MisfirePolicy }): ScheduleSpec {
  checkCron(pattern, opts?.timezone)
  return { cron: pattern, timezone: opts?.timezone, event, payload, misfire: checkMisfire(opts?.misfire) }
}

/**
 * A schedule every `ms` milliseconds, aligned to multiples of `ms` since the epoch.
 * @throws INVALID_CONFIG for an interval that is not a positive whole number, or a bad misfire policy
 */
export function everySchedule(ms: number, event: string, payload: ScheduleSpec['payload'], opts?: { misfire?: MisfirePolicy }): ScheduleSpec {
  if (!Number.isInteger(ms) || ms < 1) throw new OutpostError(ErrorCode.INVALID_CONFIG, `schedule interval must be a positive whole number of ms (got ${ms})`)
  return { everyMs: ms, event, payload, misfire: checkMisfire(opts?.misfire) }
}

function checkCron(pattern: string, timezone: string | undefined): void {
  try {
    new Cron(pattern, { paused: true, timezone }).nextRun()
  } catch (cause) {
    throw new OutpostError(ErrorCode.INVALID_CONFIG, `schedule "${pattern}"${timezone ? ` in ${timezone}` : ''} is not usable: ${errorMessage(cause)}`, { cause })
  }
}

function checkMisfire(m: MisfirePolicy | undefined): MisfirePolicy {
  const policy = m ?? 'skip'
  if (typeof policy === 'object' && (!Number.isInteger(policy.backfill) || policy.backfill < 1)) {
    throw new OutpostError(ErrorCode.INVALID_CONFIG, `misfire backfill must be a positive whole number (got ${String(policy.backfill)})`)
  }
  return policy
}
