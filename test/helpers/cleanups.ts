import { afterEach } from 'vitest'

/** Registers teardown steps during a test; after it they run in reverse order (last opened, first closed). */
export function cleanupAfterEach(): (...steps: (() => unknown)[]) => void {
  const steps: (() => unknown)[] = []
  afterEach(async () => {
    for (const step of steps.splice(0).reverse()) await step()
  })
  return (...more) => void steps.push(...more)
}
