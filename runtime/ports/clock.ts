/**
 * Time as the runtime sees it: passed in, so tests move it instead of waiting.
 * `setTimer` calls `fn` once at (or soon after) `at`; the returned function cancels it.
 */
export interface Clock {
  now(): number
  setTimer(at: number, fn: () => void): () => void
}

// setTimeout takes at most 2^31-1 ms (~24.8 days); longer waits are chained.
const MAX_DELAY = 2 ** 31 - 1

/** The machine's clock (Date.now and setTimeout). */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(at, fn) {
    let timer: ReturnType<typeof setTimeout>
    const arm = (): void => {
      const delay = at - Date.now()
      if (delay <= 0) return void (timer = setTimeout(fn, 0))
      timer = setTimeout(delay > MAX_DELAY ? arm : fn, Math.min(delay, MAX_DELAY))
    }
    arm()
    return () => clearTimeout(timer)
  },
}

/** A clock that only moves when told to; for tests and simulations. */
export interface ManualClock extends Clock {
  /** Moves time forward, firing due timers in order and letting their async work settle. */
  advance(ms: number): Promise<void>
  /** Jumps to a time without firing anything (a device that was switched off). */
  jump(to: number): void
}

/** Creates a manual clock starting at `start` (epoch ms). */
export function createManualClock(start: number): ManualClock {
  let t = start
  let seq = 0
  const timers = new Map<number, { at: number; fn: () => void }>()
  const settle = (): Promise<void> => new Promise((r) => setImmediate(r))
  return {
    now: () => t,
    setTimer(at, fn) {
      const id = ++seq
      timers.set(id, { at, fn })
      return () => void timers.delete(id)
    },
    async advance(ms) {
      const target = t + ms
      for (;;) {
        let nextId: number | undefined
        let next: { at: number; fn: () => void } | undefined
        for (const [id, timer] of timers) {
          if (timer.at <= target && (next === undefined || timer.at < next.at)) {
            next = timer
            nextId = id
          }
        }
        if (next === undefined) break
        timers.delete(nextId!)
        t = Math.max(t, next.at)
        next.fn()
        await settle()
        await settle()
      }
      t = target
      await settle()
    },
    jump(to) {
      t = to
    },
  }
}
