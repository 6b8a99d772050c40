/** Exponential backoff settings (reconnects, job retries). */
export interface BackoffOptions {
  /** First delay, ms (default 100). */
  initialMs?: number
  /** Largest delay, ms (default 30 000). */
  maxMs?: number
  /** Growth per attempt (default 2). */
  factor?: number
}

/**
 * Delay before attempt `attempt` (1-based) of a reconnect or retry: exponential up to the cap, then
 * "equal jitter" — a random point in the upper half — so a fleet that lost its broker
 * together does not come back in lockstep.
 */
export function backoffDelay(attempt: number, opts: BackoffOptions = {}, random: () => number = Math.random): number {
  const initial = opts.initialMs ?? 100
  const max = opts.maxMs ?? 30_000
  const factor = opts.factor ?? 2
  const ceiling = Math.min(max, initial * factor ** Math.max(0, attempt - 1))
  return Math.round(ceiling / 2 + random() * (ceiling / 2))
}
