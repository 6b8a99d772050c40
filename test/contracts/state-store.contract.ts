import { describe, expect } from 'vitest'
import type { StateStore } from '../../runtime/index.js'
import { contractTest } from './contract-kit.js'

export interface StateStoreContractOptions {
  /** A fresh store; a durable adapter also gives `reopen`: a store over the same data. */
  create(): { store: StateStore; reopen?: () => StateStore; dispose(): void }
  /** The adapter keeps data across a reopen (its durability tests are declared only then). */
  durable: boolean
}

/** What every state store does. */
export function describeStateStoreContract(name: string, opts: StateStoreContractOptions): void {
  const declare = contractTest<ReturnType<StateStoreContractOptions['create']>>()
  const test = (title: string, fn: (s: ReturnType<StateStoreContractOptions['create']>) => void): void => declare(title, opts.create, fn)

  describe(`StateStore contract: ${name}`, () => {
    test('gives back what was set, updates in place, and forgets what was deleted', ({ store }) => {
      expect(store.get('svc', 'k')).toBeUndefined()
      store.set('svc', 'k', { n: 1, tags: ['a'], at: 5.5 })
      expect(store.get('svc', 'k')).toEqual({ n: 1, tags: ['a'], at: 5.5 })
      store.set('svc', 'k', { n: 2, tags: [], at: 0 })
      expect(store.get('svc', 'k')).toEqual({ n: 2, tags: [], at: 0 })
      expect(store.delete('svc', 'k')).toBe(true)
      expect(store.delete('svc', 'k')).toBe(false)
      expect(store.get('svc', 'k')).toBeUndefined()
    })

    test('keeps scopes apart', ({ store }) => {
      store.set('a', 'k', 1)
      store.set('b', 'k', 2)
      expect([store.get('a', 'k'), store.get('b', 'k')]).toEqual([1, 2])
      expect(store.list('a')).toEqual([{ key: 'k', value: 1 }])
    })

    test('lists by prefix, sorted by key, taking % and _ literally', ({ store }) => {
      for (const k of ['sensor/2', 'sensor/1', 'sensor/10', 'sensors', 'other', 'sensor%', 'sensor_x']) store.set('s', k, k.length)
      expect(store.list('s', 'sensor/').map((e) => e.key)).toEqual(['sensor/1', 'sensor/10', 'sensor/2'])
      expect(store.list('s', 'sensor%').map((e) => e.key)).toEqual(['sensor%'])
      expect(store.list('s', 'sensor_').map((e) => e.key)).toEqual(['sensor_x'])
      expect(store.list('s').length).toBe(7)
    })

    test('does not let a caller change a stored value through a returned one', ({ store }) => {
      const value = { list: [1] }
      store.set('s', 'k', value)
      value.list.push(2)
      const got = store.get('s', 'k') as { list: number[] }
      got.list.push(3)
      expect(store.get('s', 'k')).toEqual({ list: [1] })
    })

    if (opts.durable) {
      test('keeps values across a reopen', ({ store, reopen }) => {
        store.set('s', 'k', 'kept')
        expect(reopen!().get('s', 'k')).toBe('kept')
      })
    }
  })
}
