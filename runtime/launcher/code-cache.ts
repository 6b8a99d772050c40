// The bundle runner's code cache (runtime/launcher/bundle-runner.ts), as the device's code sees it.

/**
 * Set by the first line of a bundle's code (build/bundle.ts writes it): the runner tells by it
 * that the code it had Node's loader require ran, and not a file emptied meanwhile.
 */
export const CODE_STARTED: unique symbol = Symbol.for('outpost.codeStarted')

/** Where the bundle runner leaves the function that keeps its code cache, when it has one to make. */
export const CODE_CACHE_READY: unique symbol = Symbol.for('outpost.codeCacheReady')

/**
 * Tells the bundle runner that the device is ready: it writes the V8 code cache of what ran so
 * far (after this turn of the event loop), when it was started without one. A no-op otherwise,
 * and when the device does not run from a bundle.
 */
export function codeCacheReady(): void {
  const keep = (globalThis as Record<symbol, unknown>)[CODE_CACHE_READY]
  if (typeof keep === 'function') (keep as () => void)()
}
