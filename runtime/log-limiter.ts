import type { Logger } from 'pino'

/** Log lines about one kind of trouble (a reason), at most one per interval, each with how many it stands for. */
export interface LogLimiter {
  /**
   * Counts one occurrence of `reason` and logs it when none was logged for that reason in the
   * last interval; the line carries `count` (occurrences since the previous line, this one
   * included) and `reason`. Never throws.
   */
  warn(reason: string, fields: Record<string, unknown>, msg: string): void
  /** Same as `warn`, at info level (news that is welcome once, not a thousand times a second). */
  info(reason: string, fields: Record<string, unknown>, msg: string): void
  /** Same as `warn`, at error level. */
  error(reason: string, fields: Record<string, unknown>, msg: string): void
  /** Occurrences of each reason since the limiter was made (logged or not). */
  counts(): Record<string, number>
}

export interface LogLimiterOptions {
  /** Shortest time between two lines of one reason, ms (default 60 000). */
  intervalMs?: number
  /**
   * Time the intervals are measured on: the runtime's `Clock` (default: the machine's time).
   * Typed by shape, as a leaf module imports nothing from the ports.
   */
  clock?: { now(): number }
  /** Most reasons tracked; further ones share the reason `other` (default 64), so ever-new reasons cannot grow memory. */
  maxReasons?: number
}

interface ReasonState {
  total: number
  /** Occurrences not yet reported in a line. */
  unreported: number
  lastAt: number
}

/**
 * Creates a rate limiter for log lines: a flood of bad frames writes one line per reason per
 * interval, not one per frame, so it cannot fill a device's disk.
 */
export function createLogLimiter(log: Logger, opts: LogLimiterOptions = {}): LogLimiter {
  const intervalMs = opts.intervalMs ?? 60_000
  const clock = opts.clock ?? Date
  const maxReasons = opts.maxReasons ?? 64
  const reasons = new Map<string, ReasonState>()

  const note = (level: 'info' | 'warn' | 'error', reason: string, fields: Record<string, unknown>, msg: string): void => {
    let key = reason
    let s = reasons.get(key)
    if (s === undefined) {
      if (reasons.size >= maxReasons) {
        key = 'other'
        s = reasons.get(key)
      }
      if (s === undefined) reasons.set(key, (s = { total: 0, unreported: 0, lastAt: -Infinity }))
    }
    s.total++
    s.unreported++
    const t = clock.now()
    // A time before the last line's means the clock was set back: that line's interval is over,
    // or a step back of years would keep this reason quiet for years.
    if (t - s.lastAt < intervalMs && t >= s.lastAt) return
    const count = s.unreported
    s.unreported = 0
    s.lastAt = t
    try {
      log[level]({ ...fields, reason: key, count }, count > 1 ? `${msg} (${count} since the last report)` : msg)
    } catch {
      // A logger that fails must not turn bad input into a crash.
    }
  }

  return {
    warn: (reason, fields, msg) => note('warn', reason, fields, msg),
    info: (reason, fields, msg) => note('info', reason, fields, msg),
    error: (reason, fields, msg) => note('error', reason, fields, msg),
    counts: () => Object.fromEntries([...reasons].map(([k, s]) => [k, s.total])),
  }
}
