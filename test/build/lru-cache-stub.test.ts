// The bundle's stand-in for lru-cache (build/stubs/lru-cache.ts) beside the real one MQTT.js
// uses, on what MQTT.js's topic aliases do with it: the same answers to every call in a long
// random sequence of get, set, has, delete, clear, size and keys().
import { LRUCache as RealLRU } from 'lru-cache'
import { describe, expect, it } from 'vitest'
import { LRUCache as StubLRU } from '../../build/stubs/lru-cache.js'

/** A small deterministic random sequence (no flaky seeds). */
function random(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return s / 2 ** 32
  }
}

describe('the lru-cache stand-in of device bundles', () => {
  it('answers as lru-cache does, call for call, for several sizes', () => {
    for (const max of [1, 3, 10]) {
      const real = new RealLRU<number, string>({ max })
      const stub = new StubLRU<number, string>({ max })
      const next = random(max)
      for (let i = 0; i < 5_000; i++) {
        const key = Math.floor(next() * (max * 2 + 2))
        const op = next()
        if (op < 0.35) expect(stub.get(key), `get ${key}`).toBe(real.get(key))
        else if (op < 0.75) {
          stub.set(key, `v${i}`)
          real.set(key, `v${i}`)
        } else if (op < 0.85) expect(stub.has(key)).toBe(real.has(key))
        else if (op < 0.95) expect(stub.delete(key)).toBe(real.delete(key))
        else if (op < 0.96) {
          stub.clear()
          real.clear()
        }
        expect(stub.size).toBe(real.size)
        expect([...stub.keys()]).toEqual([...real.keys()])
      }
    }
  })

  it('refuses a size of 0, as lru-cache does', () => {
    expect(() => new RealLRU({ max: 0 })).toThrow(TypeError)
    expect(() => new StubLRU({ max: 0 })).toThrow(TypeError)
  })
})
