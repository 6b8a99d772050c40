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

/** A wait between two tries that closing can cut short. */
export interface Pause {
  /** Resolves after `ms`, or at the next `wake()`, whichever comes first. */
  wait(ms: number): Promise<void>
  /** Ends every wait now (closing: the loop then sees that it should stop). */
  wake(): void
}

export function createPause(): Pause {
  const waiting = new Set<() => void>()
  return {
    wait: (ms) =>
      new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer)
          waiting.delete(done)
          resolve()
        }
        const timer = setTimeout(done, ms)
        waiting.add(done)
      }),
    wake: () => {
      for (const done of [...waiting]) done()
    },
  }
}
