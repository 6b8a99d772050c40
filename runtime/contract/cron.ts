import { Cron } from 'croner'
import { ErrorCode, errorMessage, OutpostError } from '../errors.js'
import type { Timing } from './schedule-spec.js'

// Cron timings, in a module of their own: croner is 33 KB minified, and a device bundle carries
// it only when a service of the device calls `cron` (esbuild leaves out what nothing imports).

/**
 * Fires on a cron pattern (5–7 fields, croner syntax: seconds first when there are 6 or 7), read
 * in an IANA timezone (UTC by default). Use it with the schedule builder:
 * `s.at(cron('0 *\/5 * * * *', { timezone: 'Europe/Berlin' }), 'reading', payload)`.
 * @throws INVALID_CONFIG for a pattern or timezone croner cannot use
 */
export function cron(pattern: string, opts?: { timezone?: string }): Timing {
  const timezone = opts?.timezone
  let engine: Cron
  try {
    engine = new Cron(pattern, { paused: true, timezone })
    engine.nextRun()
  } catch (cause) {
    throw new OutpostError(ErrorCode.INVALID_CONFIG, `schedule "${pattern}"${timezone ? ` in ${timezone}` : ''} is not usable: ${errorMessage(cause)}`, { cause })
  }
  return { cron: pattern, ...(timezone === undefined ? {} : { timezone }), next: (after) => engine.nextRun(new Date(after))?.getTime() }
}
