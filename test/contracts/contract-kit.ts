import { it } from 'vitest'

/** Declares a contract test that runs on a fresh instance from `create` and disposes it after. */
export function contractTest<I extends { dispose(): void }>() {
  return (title: string, create: () => I, fn: (instance: I) => void): void => {
    it(title, () => {
      const instance = create()
      try {
        fn(instance)
      } finally {
        instance.dispose()
      }
    })
  }
}
