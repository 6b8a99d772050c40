/** How long to hold the refusal of a failed login from one remote address (repeated failures slow down). */
export interface LoginThrottle {
  /** Records one failed login from `address`; returns how long to wait before refusing it, ms. */
  failed(address: string): number
  /** Addresses with failures remembered now (at most `maxAddresses`). */
  size(): number
  /** Records a login from `address` that succeeded: its failures are forgotten, and its next checks go first. */
  succeeded(address: string): void
  /**
   * Waits for the turn of a secret check from `address`. A check is a scrypt hash on Node's
   * four-thread pool, and a flood of them held good devices past their 5 s connect timeout:
   * - from an address a login succeeded from lately: at once (up to `maxInFlight` at a time);
   * - from an address not seen yet: at most `freshSlots` such checks run at once, in all;
   * - from an address with failures, or with `maxInFlight` checks under way: one after the other
   *   (the next once the previous one is answered, its refusal's delay included), and at most
   *   `suspectSlots` such checks at once, in all.
   * `checked` gives the shared place back once the check is done; `answered`, once the login is
   * answered (it also does what `checked` does).
   */
  turn(address: string): Promise<LoginTurn>
}

/** A secret check's turn (see LoginThrottle.turn). */
export interface LoginTurn {
  checked(): void
  answered(): void
}

export interface LoginThrottleOptions {
  /** Wait after the second failure in a row, ms; it doubles with each further failure (default 250). The first failure is answered at once. */
  baseMs?: number
  /** Longest wait, ms (default 3 000: under the devices' 5 s connect timeout, so that a device refused after it hears why). */
  maxMs?: number
  /** Checks from one address under way at once before it has to wait its turn (default 4). */
  maxInFlight?: number
  /** Checks from addresses with failures under way at once, all of them together (default 2). */
  suspectSlots?: number
  /** Checks from addresses not seen yet under way at once, all of them together (default 8). */
  freshSlots?: number
  /** Addresses a login succeeded from that are remembered (default 4 096; the oldest are forgotten first). */
  maxTrusted?: number
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
  // Checks under way per address; the last one queued of each address that waits its turn; the
  // addresses logins succeeded from lately (insertion order: the oldest first).
  const inFlight = new Map<string, number>()
  const tails = new Map<string, Promise<void>>()
  const trusted = new Set<string>()
  const maxTrusted = opts.maxTrusted ?? 4_096
  /** A number of shared places, handed out in the order they were asked for. */
  const places = (n: number): { take(): Promise<void>; give(): void } => {
    let free = n
    const waiting: (() => void)[] = []
    return {
      take: () => {
        if (free > 0) {
          free--
          return Promise.resolve()
        }
        return new Promise((resolve) => waiting.push(resolve))
      },
      give: () => {
        const next = waiting.shift()
        if (next !== undefined) next()
        else free++
      },
    }
  }
  const suspects = places(opts.suspectSlots ?? 2)
  const fresh = places(opts.freshSlots ?? 8)
  const leave = (address: string): void => {
    const n = (inFlight.get(address) ?? 1) - 1
    if (n <= 0) inFlight.delete(address)
    else inFlight.set(address, n)
  }
  /** A turn that gives back `shared` (when it took one) once checked, and calls `after` once answered. */
  const turnOf = (address: string, shared: { give(): void } | undefined, after?: () => void): LoginTurn => {
    let checked = false
    let answered = false
    const check = (): void => {
      if (checked) return
      checked = true
      shared?.give()
    }
    return {
      checked: check,
      answered: () => {
        if (answered) return
        answered = true
        check()
        leave(address)
        after?.()
      },
    }
  }
  return {
    succeeded(address) {
      byAddress.delete(address)
      trusted.delete(address)
      trusted.add(address)
      if (trusted.size > maxTrusted) trusted.delete(trusted.values().next().value!)
    },
    turn(address) {
      const n = inFlight.get(address) ?? 0
      inFlight.set(address, n + 1)
      if (n < maxInFlight && !byAddress.has(address)) {
        if (trusted.has(address)) return Promise.resolve(turnOf(address, undefined))
        return fresh.take().then(() => turnOf(address, fresh))
      }
      const before = tails.get(address) ?? Promise.resolve()
      let done!: () => void
      const mine = new Promise<void>((resolve) => (done = resolve))
      tails.set(address, mine)
      return before.then(suspects.take).then(() =>
        turnOf(address, suspects, () => {
          if (tails.get(address) === mine) tails.delete(address)
          done()
        }),
      )
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
