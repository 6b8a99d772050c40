/** How long to hold the refusal of a failed login from one remote address (repeated failures slow down). */
export interface LoginThrottle {
  /** Records one failed login from `address`; returns how long to wait before refusing it, ms. */
  failed(address: string): number
  /** Addresses with failures remembered now (at most `maxAddresses`). */
  size(): number
}

export interface LoginThrottleOptions {
  /** Wait after the second failure in a row, ms; it doubles with each further failure (default 250). The first failure is answered at once. */
  baseMs?: number
  /** Longest wait, ms (default 5 000). */
  maxMs?: number
  /** An address without a failure for this long starts over (default 10 minutes). */
  forgetMs?: number
  /** Most addresses remembered; past it the one that failed longest ago is forgotten (default 4 096). */
  maxAddresses?: number
  clock?: { now(): number }
}

interface Failures {
  count: number
  lastAt: number
}

/**
 * Creates the throttle of failed logins: a bounded map of remote addresses to their recent
 * failures. It only says how long to wait: the caller holds its answer with a timer, so no
 * event loop ever sleeps, and a flood of addresses forgets the oldest ones rather than grow.
 */
export function createLoginThrottle(opts: LoginThrottleOptions = {}): LoginThrottle {
  const baseMs = opts.baseMs ?? 250
  const maxMs = opts.maxMs ?? 5_000
  const forgetMs = opts.forgetMs ?? 10 * 60_000
  const maxAddresses = opts.maxAddresses ?? 4_096
  const clock = opts.clock ?? Date
  // Insertion order is the order of last failure (an entry is moved to the end on each failure).
  const byAddress = new Map<string, Failures>()
  return {
    failed(address) {
      const now = clock.now()
      let f = byAddress.get(address)
      if (f !== undefined) byAddress.delete(address)
      if (f === undefined || now - f.lastAt > forgetMs) f = { count: 0, lastAt: now }
      f.count++
      f.lastAt = now
      byAddress.set(address, f)
      if (byAddress.size > maxAddresses) byAddress.delete(byAddress.keys().next().value!)
      if (f.count <= 1) return 0
      // 2^(count-2) stays finite for any count; the cap bounds it.
      return Math.min(maxMs, baseMs * 2 ** Math.min(f.count - 2, 30))
    },
    size: () => byAddress.size,
  }
}
