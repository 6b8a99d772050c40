/**
 * Time as the runtime sees it: passed in, so tests move it instead of waiting.
 *
 * One clock serves every part of a runtime that reads the time or waits for it: envelopes'
 * timestamps and deadlines, pending replies, handlers' deadline signals, discovery waits,
 * schedules, queues and leases, the outbox pump's retries, log rate limits and the bridges'
 * reconnect backoff. A manual clock therefore moves all of them together.
 *
 * What stays on real time, on purpose: the bound on how long `stop`/`close` wait for work in
 * flight (`drainMs`) and retries of a store that another process holds busy. Both wait for
 * something that runs in real time (a handler, a socket, a SQLite lock), and a test that stops
 * a runtime on a manual clock must not hang because nobody advances it.
 */
export interface Clock {
  /** The current time, epoch ms. */
  now(): number
  /**
   * Calls `fn` once at (or soon after) `at` (epoch ms; a time already past fires as soon as
   * possible); the returned function cancels it. The wait is `at - now()` counted when the timer
   * is set, on real (monotonic) time, as Node's timers wait: a step of the clock while it waits
   * does not move it.
   */
  setTimer(at: number, fn: () => void, opts?: TimerOptions): () => void
  /**
   * Time that only moves on with real time (ms from an arbitrary origin, never set): what a
   * step of `now` (an NTP sync, a dead RTC battery, an operator) is measured against. Timers
   * wait on it. Optional: a clock without it lets `watchClock` notice only steps back.
   */
  monotonic?(): number
}

/** How a timer relates to the process that runs it. */
export interface TimerOptions {
  /**
   * The timer alone does not keep the process alive (Node's `unref`; default false). For
   * timers that only matter while something else keeps the process running: a request's
   * deadline, a retry of the outbox, a reconnect of a bridge that is being closed.
   */
  unref?: boolean
}

/** Timer options of an unref'd timer, shared so hot paths pass them without allocating. */
export const UNREF: TimerOptions = Object.freeze({ unref: true })

// setTimeout takes at most 2^31-1 ms (~24.8 days); longer waits are chained.
const MAX_DELAY = 2 ** 31 - 1

/**
 * Milliseconds of the process's monotonic clock, from process.hrtime: `performance.now()` would load
 * node:perf_hooks the first time (~1–2 ms of a device's start, where the scheduler reads it).
 */
const hrtimeMs = (): number => {
  const [s, ns] = process.hrtime()
  return s * 1_000 + ns / 1_000_000
}

/** The machine's clock (Date.now and setTimeout; monotonic: process.hrtime). */
export const systemClock: Clock = {
  now: () => Date.now(),
  monotonic: hrtimeMs,
  setTimer(at, fn, opts) {
    const unref = opts?.unref === true
    let delay = at - Date.now()
    // The common case (due within ~24.8 days): one setTimeout, no re-arming closure.
    if (delay <= MAX_DELAY) {
      const timer = setTimeout(fn, delay > 0 ? delay : 0)
      if (unref) timer.unref()
      return () => clearTimeout(timer)
    }
    let timer: ReturnType<typeof setTimeout>
    const arm = (): void => {
      delay = at - Date.now()
      timer = delay > MAX_DELAY ? setTimeout(arm, MAX_DELAY) : setTimeout(fn, delay > 0 ? delay : 0)
      if (unref) timer.unref()
    }
    arm()
    return () => clearTimeout(timer)
  },
}

/** A clock that only moves when told to; for tests and simulations. */
export interface ManualClock extends Clock {
  /**
   * Moves time forward by `ms`, firing due timers in time order (timers set by a firing timer
   * fire too when due by then) and letting the async work they start settle after each one.
   */
  advance(ms: number): Promise<void>
  /** Moves time forward to the next timer and fires what is due then; false when no timer is set. */
  advanceToNext(): Promise<boolean>
  /**
   * Jumps to a time without firing anything: the wall clock is set (a device that was switched
   * off, an NTP sync, a clock set back). `monotonic()` does not move with it, and neither do the
   * timers set (they wait on monotonic time, as the system clock's do).
   */
  jump(to: number): void
  /** How many timers are set and not yet fired or cancelled. */
  readonly pending: number
  /** When the earliest timer is due, or undefined when none is set. */
  nextAt(): number | undefined
}

/** Creates a manual clock starting at `start` (epoch ms). */
export function createManualClock(start: number): ManualClock {
  let t = start
  // monotonic() is t - skew: advancing moves both, jumping moves t alone.
  let skew = start
  let seq = 0
  const mono = (): number => t - skew
  // Each timer is due at a point of monotonic time, as Node's timers are.
  const timers = new Map<number, { due: number; fn: () => void }>()
  // Two turns of the event loop: promise chains and I/O callbacks started by a timer run on.
  const settle = async (): Promise<void> => {
    await new Promise((r) => setImmediate(r))
    await new Promise((r) => setImmediate(r))
  }
  /** The earliest timer due at or before `limit` (monotonic; the one set first among equals). */
  const earliest = (limit: number): [number, { due: number; fn: () => void }] | undefined => {
    let found: [number, { due: number; fn: () => void }] | undefined
    for (const entry of timers) if (entry[1].due <= limit && (found === undefined || entry[1].due < found[1].due)) found = entry
    return found
  }
  /** Fires every timer due within the next `ms`, in order, then moves time on by what is left of `ms`. */
  const runFor = async (ms: number): Promise<void> => {
    const target = mono() + ms
    for (let next = earliest(target); next !== undefined; next = earliest(target)) {
      timers.delete(next[0])
      t += Math.max(0, next[1].due - mono())
      next[1].fn()
      await settle()
    }
    t += Math.max(0, target - mono())
    await settle()
  }
  return {
    now: () => t,
    monotonic: mono,
    setTimer(at, fn) {
      const id = ++seq
      timers.set(id, { due: mono() + (at - t), fn })
      return () => void timers.delete(id)
    },
    advance: (ms) => runFor(ms),
    async advanceToNext() {
      const next = earliest(Number.POSITIVE_INFINITY)
      if (next === undefined) return false
      await runFor(Math.max(0, next[1].due - mono()))
      return true
    },
    jump(to) {
      skew += to - t
      t = to
    },
    get pending() {
      return timers.size
    },
    nextAt() {
      const next = earliest(Number.POSITIVE_INFINITY)
      return next === undefined ? undefined : t + (next[1].due - mono())
    },
  }
}

/** Steps of a clock's time (`now`) against its monotonic time, as a component sees them. */
export interface ClockWatch {
  /**
   * How far `now` (the clock's time, read just before) stepped since the last call, ms: > 0
   * forward, < 0 back; 0 when it did not step by more than the tolerance (slews and the
   * drift of an NTP-disciplined clock are no steps). Without `monotonic` only steps back are seen.
   */
  step(now: number): number
}

/** Watches `clock` for steps over `toleranceMs` (default 1 s). */
export function watchClock(clock: Clock, toleranceMs = 1_000): ClockWatch {
  const mono = clock.monotonic === undefined ? undefined : clock.monotonic.bind(clock)
  if (mono === undefined) {
    let last = clock.now()
    return {
      step(now) {
        const d = now - last
        last = now
        return d < -toleranceMs ? d : 0
      },
    }
  }
  let offset = clock.now() - mono()
  return {
    step(now) {
      const o = now - mono()
      const d = o - offset
      offset = o
      // Whole ms: steps move stored times, which are whole ms.
      return d > toleranceMs || d < -toleranceMs ? Math.round(d) : 0
    },
  }
}
