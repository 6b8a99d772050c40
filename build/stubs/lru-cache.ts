// Stands in for `lru-cache` in device bundles (17 KB minified), required by MQTT.js only for
// MQTT 5 topic aliases (mqtt/build/lib/topic-alias-send.js). It does what that file uses, as
// lru-cache does it: a bounded map whose get and set make an entry the most recently used, which
// evicts the least recently used entry when full, and whose keys() run from most to least
// recently used. test/build/lru-cache-stub.test.ts runs it beside the real one.

export interface LRUCacheOptions {
  max: number
}

export class LRUCache<K, V> {
  readonly max: number
  // Insertion order of a Map, least recently used first.
  readonly #entries = new Map<K, V>()

  constructor(opts: LRUCacheOptions) {
    if (!Number.isInteger(opts.max) || opts.max < 1) throw new TypeError('max must be a positive integer')
    this.max = opts.max
  }

  get size(): number {
    return this.#entries.size
  }

  has(key: K): boolean {
    return this.#entries.has(key)
  }

  get(key: K): V | undefined {
    if (!this.#entries.has(key)) return undefined
    const value = this.#entries.get(key) as V
    this.#entries.delete(key)
    this.#entries.set(key, value)
    return value
  }

  set(key: K, value: V): this {
    this.#entries.delete(key)
    this.#entries.set(key, value)
    if (this.#entries.size > this.max) this.#entries.delete(this.#entries.keys().next().value as K)
    return this
  }

  delete(key: K): boolean {
    return this.#entries.delete(key)
  }

  clear(): void {
    this.#entries.clear()
  }

  /** From the most to the least recently used, as lru-cache gives them. */
  *keys(): Generator<K> {
    yield* [...this.#entries.keys()].reverse()
  }
}
