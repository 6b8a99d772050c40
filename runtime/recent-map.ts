/**
 * A map that remembers the last `capacity` keys inserted (oldest forgotten first). Eviction
 * walks a ring of keys, so it stays O(1): evicting from the front of a JS Map through its
 * iterator gets slower as deleted slots pile up ahead of it.
 */
export interface RecentMap<V> {
  get(key: string): V | undefined
  has(key: string): boolean
  /** Inserts a new key (possibly forgetting the oldest) or updates an existing one in place. */
  set(key: string, value: V): void
  readonly size: number
}

/** Creates a bounded recent-keys map. */
export function createRecentMap<V>(capacity: number): RecentMap<V> {
  const map = new Map<string, V>()
  const max = Math.max(1, capacity)
  // Grown as keys come, not made whole: a subscription's map (10,000 keys by default) made at
  // start was a 10,000-slot array to allocate and fill before the device was ready.
  const ring: string[] = []
  let pos = 0
  return {
    get: (key) => map.get(key),
    has: (key) => map.has(key),
    set(key, value) {
      if (map.has(key)) {
        map.set(key, value)
        return
      }
      if (ring.length < max) ring.push(key)
      else {
        map.delete(ring[pos]!)
        ring[pos] = key
        pos = (pos + 1) % max
      }
      map.set(key, value)
    },
    get size() {
      return map.size
    },
  }
}
