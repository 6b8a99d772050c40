import { createRequire } from 'node:module'

// The broker's subscriptions in memory: each client's list (what a returning session gets back)
// and a topic trie of the QoS 1 and 2 ones (who gets a message kept for offline clients). The
// persistence writes the rows.

// qlobber is CommonJS without type declarations; only the part used here is typed.
const require = createRequire(import.meta.url)
/** A subscription as the trie holds it. */
export interface TrieSub {
  clientId: string
  topic: string
  qos: number
  rh?: number
  rap?: boolean
  nl?: boolean
}
interface QlobberSubLike {
  add(topic: string, sub: TrieSub): void
  remove(topic: string, sub: { clientId: string; topic: string }): void
  match(topic: string): TrieSub[]
  readonly subscriptionsCount: number
}
const QlobberSub = require('qlobber/aedes/qlobber-sub') as new (opts: object) => QlobberSubLike
const { QlobberTrue } = require('qlobber') as { QlobberTrue: new (opts: object) => { add(t: string): void; test(t: string): boolean } }

const QLOBBER_OPTIONS = { wildcard_one: '+', wildcard_some: '#', separator: '/' }

/** A matcher of one MQTT topic filter. */
export function filterMatcher(filter: string): (topic: string) => boolean {
  const q = new QlobberTrue(QLOBBER_OPTIONS)
  q.add(filter)
  return (topic) => q.test(topic)
}

/** A subscription as the client list keeps it (MQTT 5 options and identifier included). */
export interface SubRecord {
  qos: number
  rh?: number
  rap?: boolean
  nl?: boolean
  subscriptionIdentifier?: number
}

export class SubscriptionIndex {
  readonly #byClient = new Map<string, Map<string, SubRecord>>()
  readonly #trie = new QlobberSub(QLOBBER_OPTIONS)
  #clients = 0

  /** Adds or replaces a client's subscription to `topic`. */
  add(clientId: string, topic: string, record: SubRecord): void {
    let stored = this.#byClient.get(clientId)
    if (stored === undefined) {
      stored = new Map()
      this.#byClient.set(clientId, stored)
      this.#clients++
    }
    const before = stored.get(topic)
    if (record.qos > 0) {
      this.#trie.add(topic, { clientId, topic, qos: record.qos, rh: record.rh, rap: record.rap, nl: record.nl })
    } else if (before !== undefined && before.qos > 0) {
      this.#trie.remove(topic, { clientId, topic })
    }
    stored.set(topic, record)
  }

  /** Removes a client's subscriptions to `topics` (those it has). @returns false when it had none at all */
  remove(clientId: string, topics: string[]): boolean {
    const stored = this.#byClient.get(clientId)
    if (stored === undefined) return false
    for (const topic of topics) {
      const sub = stored.get(topic)
      if (sub === undefined) continue
      if (sub.qos > 0) this.#trie.remove(topic, { clientId, topic })
      stored.delete(topic)
    }
    if (stored.size === 0) {
      this.#clients--
      this.#byClient.delete(clientId)
    }
    return true
  }

  /** Removes every subscription of a client. @returns false when it had none */
  clear(clientId: string): boolean {
    const stored = this.#byClient.get(clientId)
    if (stored === undefined) return false
    for (const [topic, sub] of stored) if (sub.qos > 0) this.#trie.remove(topic, { clientId, topic })
    this.#clients--
    this.#byClient.delete(clientId)
    return true
  }

  /** A client's subscriptions, as aedes restores them. */
  of(clientId: string): (SubRecord & { topic: string })[] {
    const subs: (SubRecord & { topic: string })[] = []
    for (const [topic, record] of this.#byClient.get(clientId) ?? []) subs.push({ topic, ...record })
    return subs
  }

  /** The QoS 1 and 2 subscriptions matching a topic. */
  matching(topic: string): TrieSub[] {
    return this.#trie.match(topic)
  }

  counts(): { subsCount: number; clientsCount: number } {
    return { subsCount: this.#trie.subscriptionsCount, clientsCount: this.#clients }
  }

  /** The clients subscribed to exactly this filter. */
  *clientsOf(topic: string): Generator<string> {
    for (const [clientId, topics] of this.#byClient) if (topics.has(topic)) yield clientId
  }
}
