import type { DeviceTransaction } from '../../ports/device-transaction.js'
import type { Outbox, OutboxEntry, OutboxStreamLimits } from '../../ports/outbox.js'
import { createOutboxAccounting } from '../outbox-accounting.js'
import { createMemoryTransaction } from './memory-transaction.js'

/**
 * Creates an outbox in memory (gone with the process; for tests and devices without storage).
 * `transaction`: the device transaction it shares with a memory queue store (default: its own).
 */
export function createMemoryOutbox(opts: { limits?: Record<string, OutboxStreamLimits>; transaction?: DeviceTransaction } = {}): Outbox {
  const acct = createOutboxAccounting(opts.limits)
  const entries = new Map<number, OutboxEntry>() // insertion order is seq order
  let seq = 0
  return {
    transaction: opts.transaction ?? createMemoryTransaction(),
    append(e) {
      const size = e.frame.length
      let over = acct.admit(e.stream, size)
      for (const [s, old] of entries) {
        if (over <= 0) break
        if (old.stream !== e.stream) continue
        entries.delete(s)
        acct.removed(old.stream, old.frame.length, 'dropped')
        over -= old.frame.length
      }
      const entry: OutboxEntry = { ...e, seq: ++seq }
      entries.set(entry.seq, entry)
      acct.added(e.stream, size)
      return entry.seq
    },
    peek(after, limit) {
      const out: OutboxEntry[] = []
      for (const e of entries.values()) {
        if (e.seq <= after) continue
        out.push(e)
        if (out.length >= limit) break
      }
      return out
    },
    ack(s) {
      const e = entries.get(s)
      if (e === undefined) return
      entries.delete(s)
      acct.removed(e.stream, e.frame.length, 'delivered')
    },
    discard(s, reason) {
      const e = entries.get(s)
      if (e === undefined) return
      entries.delete(s)
      acct.removed(e.stream, e.frame.length, 'dropped', reason)
    },
    stats: () => ({ ...acct.stats, dropped: { ...acct.stats.dropped } }),
  }
}
