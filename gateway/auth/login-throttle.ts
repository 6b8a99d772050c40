/** How long to hold the refusal of a failed login from one remote address (repeated failures slow down). */
export interface LoginThrottle {
  /** Records one failed login from `address`; returns how long to wait before refusing it, ms. */
  failed(address: string): number
  /** Addresses with failures remembered now (at most `maxAddresses`). */
  size(): number
  /**
   * Waits for the turn of a secret check from `address`, and gives what to call once its login
   * is answered (a refusal after its delay). A check is a scrypt hash on Node's four-thread pool:
   * 2,000 wrong logins in flight from one address held good devices from every address past their
   * 5 s connect timeout. So checks from an address with failures remembered, or with
   * `maxInFlight` checks already under way, run one after the other (the next once the previous
   * one is answered), and share `suspectSlots` places: checks from other addresses go first.
   */
  turn(address: string): Promise<() => void>
}

export interface LoginThrottleOptions {
  /** Wait after the second failure in a row, ms; it doubles with each further failure (default 250). The first failure is answered at once. */
  baseMs?: number
  /** Longest wait, ms (default 3 000: under the devices' 5 s connect timeout, so that a device refused after it hears why). */
  maxMs?: number
  /** Checks from one address under way at once before it has to wait its turn (default 4). */
  maxInFlight?: number
  /** Checks of waiting addresses (see `turn`) under way at once, all of them together (default 2). */
  suspectSlots?: number
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
  const maxMs = opts.maxMs ?? 3_000
  const maxInFlight = opts.maxInFlight ?? 4
  const forgetMs = opts.forgetMs ?? 10 * 60_000
  const maxAddresses = opts.maxAddresses ?? 4_096
  const clock = opts.clock ?? Date
  // Insertion order is the order of last failure (an entry is moved to the end on each failure).
  const byAddress = new Map<string, Failures>()
  // Checks under way per address, the last one queued of each address that waits its turn, and
  // the places those share (with who waits for one).
  const inFlight = new Map<string, number>()
  const tails = new Map<string, Promise<void>>()
  let free = opts.suspectSlots ?? 2
  const waiting: (() => void)[] = []
  const slot = (): Promise<void> => {
    if (free > 0) {
      free--
      return Promise.resolve()
    }
    return new Promise((resolve) => waiting.push(resolve))
  }
  const freeSlot = (): void => {
    const next = waiting.shift()
    if (next !== undefined) next()
    else free++
  }
  const leave = (address: string): void => {
    const n = (inFlight.get(address) ?? 1) - 1
    if (n <= 0) inFlight.delete(address)
    else inFlight.set(address, n)
  }
  return {
    turn(address) {
      const n = inFlight.get(address) ?? 0
      inFlight.set(address, n + 1)
      if (n < maxInFlight && !byAddress.has(address)) return Promise.resolve(() => leave(address))
      const before = tails.get(address) ?? Promise.resolve()
      let done!: () => void
      const mine = new Promise<void>((resolve) => (done = resolve))
      tails.set(address, mine)
      return before.then(slot).then(() => {
        let released = false
        return () => {
          if (released) return
          released = true
          leave(address)
          freeSlot()
          if (tails.get(address) === mine) tails.delete(address)
          done()
        }
      })
    },
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
