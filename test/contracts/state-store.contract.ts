import { describe, expect, it } from 'vitest'
import type { StateStore } from '../../runtime/index.js'

export interface StateStoreContractOptions {
  /** A fresh store; `reopen` gives a store over the same data, if the adapter is durable. */
  create(): { store: StateStore; reopen?: () => StateStore; dispose(): void }
  skip?: { test: string; reason: string }[]
}

/** What every state store does. */
export function describeStateStoreContract(name: string, opts: StateStoreContractOptions): void {
  const skipped = new Map((opts.skip ?? []).map((s) => [s.test, s.reason]))
  const test = (title: string, fn: () => void): void => {
    if (skipped.has(title)) it.skip(`${title} (skipped: ${skipped.get(title)})`, fn)
    else it(title, fn)
  }
  const withStore = (fn: (s: ReturnType<StateStoreContractOptions['create']>) => void) => () => {
    const s = opts.create()
    try {
      fn(s)
    } finally {
      s.dispose()
    }
  }

  describe(`StateStore contract: ${name}`, () => {
    test('gives back what was set, updates in place, and forgets what was deleted', withStore(({ store }) => {
      expect(store.get('svc', 'k')).toBeUndefined()
      store.set('svc', 'k', { n: 1, tags: ['a'], at: 5.5 })
      expect(store.get('svc', 'k')).toEqual({ n: 1, tags: ['a'], at: 5.5 })
      store.set('svc', 'k', { n: 2, tags: [], at: 0 })
      expect(store.get('svc', 'k')).toEqual({ n: 2, tags: [], at: 0 })
      expect(store.delete('svc', 'k')).toBe(true)
      expect(store.delete('svc', 'k')).toBe(false)
      expect(store.get('svc', 'k')).toBeUndefined()
    }))

    test('keeps scopes apart', withStore(({ store }) => {
      store.set('a', 'k', 1)
      store.set('b', 'k', 2)
      expect([store.get('a', 'k'), store.get('b', 'k')]).toEqual([1, 2])
      expect(store.list('a')).toEqual([{ key: 'k', value: 1 }])
    }))

    test('lists by prefix, sorted by key, taking % and _ literally', withStore(({ store }) => {
      for (const k of ['sensor/2', 'sensor/1', 'sensor/10', 'sensors', 'other', 'sensor%', 'sensor_x']) store.set('s', k, k.length)
      expect(store.list('s', 'sensor/').map((e) => e.key)).toEqual(['sensor/1', 'sensor/10', 'sensor/2'])
      expect(store.list('s', 'sensor%').map((e) => e.key)).toEqual(['sensor%'])
      expect(store.list('s', 'sensor_').map((e) => e.key)).toEqual(['sensor_x'])
      expect(store.list('s').length).toBe(7)
    }))

    test('does not let a caller change a stored value through a returned one', withStore(({ store }) => {
      const value = { list: [1] }
      store.set('s', 'k', value)
      value.list.push(2)
      const got = store.get('s', 'k') as { list: number[] }
      got.list.push(3)
      expect(store.get('s', 'k')).toEqual({ list: [1] })
    }))

    test('keeps values across a reopen', withStore(({ store, reopen }) => {
      store.set('s', 'k', 'kept')
      expect(reopen!().get('s', 'k')).toBe('kept')
    }))
  })
}
