import type { StateStore } from '../../ports/state-store.js'

/** Creates a state store that lives in memory (tests, or a device without a database). */
export function createMemoryStateStore(): StateStore {
  const scopes = new Map<string, Map<string, unknown>>()
  const scope = (name: string): Map<string, unknown> => {
    let m = scopes.get(name)
    if (m === undefined) scopes.set(name, (m = new Map()))
    return m
  }
  return {
    get: (s, key) => {
      const value = scopes.get(s)?.get(key)
      return value === undefined ? undefined : structuredClone(value)
    },
    set: (s, key, value) => void scope(s).set(key, structuredClone(value)),
    delete: (s, key) => scopes.get(s)?.delete(key) ?? false,
    list: (s, prefix = '') =>
      [...(scopes.get(s) ?? new Map<string, unknown>()).entries()]
        .filter(([k]) => k.startsWith(prefix))
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([key, value]) => ({ key, value: structuredClone(value) })),
  }
}
