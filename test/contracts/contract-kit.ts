import { it } from 'vitest'

/** A skip a contract suite allows, with the reason written down (it shows in the report). */
export interface ContractSkip {
  test: string
  reason: string
}

/**
 * Declares a contract test that runs on a fresh instance from `create` and disposes it after,
 * or is reported as skipped with its reason.
 */
export function contractTest<I extends { dispose(): void }>(skip: ContractSkip[] | undefined) {
  const skipped = new Map((skip ?? []).map((s) => [s.test, s.reason]))
  return (title: string, create: () => I, fn: (instance: I) => void): void => {
    const run = (): void => {
      const instance = create()
      try {
        fn(instance)
      } finally {
        instance.dispose()
      }
    }
    if (skipped.has(title)) it.skip(`${title} (skipped: ${skipped.get(title)})`, run)
    else it(title, run)
  }
}
