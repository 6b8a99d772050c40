import { describe, expect } from 'vitest'
import { contractTest } from './contract-kit.js'
import { ErrorCode, isOutpostError, type Outbox, type OutboxStreamLimits } from '../../runtime/index.js'

export interface OutboxContractOptions {
  create(limits?: Record<string, OutboxStreamLimits>): { outbox: Outbox; reopen?: () => Outbox; dispose(): void }
  /** The adapter keeps entries across a reopen (its durability tests are declared only then). */
  durable: boolean
}

const frame = (n: number, size = 10): Uint8Array => new Uint8Array(size).fill(n % 256)
const entry = (n: number, stream = 'events', size = 10) => ({ stream, topic: `t/${n}`, frame: frame(n, size), retain: false })

/** What every outbox does. */
export function describeOutboxContract(name: string, opts: OutboxContractOptions): void {
  const declare = contractTest<ReturnType<OutboxContractOptions['create']>>()
  const test = (title: string, fn: (o: ReturnType<OutboxContractOptions['create']>) => void, limits?: Record<string, OutboxStreamLimits>): void =>
    declare(title, () => opts.create(limits), fn)

  describe(`Outbox contract: ${name}`, () => {
    test('hands entries out in the order they were appended and forgets acknowledged ones', ({ outbox }) => {
      const seqs = [1, 2, 3, 4].map((n) => outbox.append(entry(n)))
      expect([...seqs].sort((a, b) => a - b)).toEqual(seqs)
      expect(outbox.peek(0, 10).map((e) => e.topic)).toEqual(['t/1', 't/2', 't/3', 't/4'])
      expect(outbox.peek(seqs[1]!, 10).map((e) => e.topic)).toEqual(['t/3', 't/4'])
      expect(outbox.peek(0, 2).length).toBe(2)
      outbox.ack(seqs[0]!)
      outbox.ack(seqs[0]!) // twice is harmless
      expect(outbox.peek(0, 10).map((e) => e.topic)).toEqual(['t/2', 't/3', 't/4'])
      expect(Array.from(outbox.peek(0, 1)[0]!.frame)).toEqual(Array.from(frame(2)))
      const s = outbox.stats()
      expect([s.entries, s.bytes, s.appended, s.delivered]).toEqual([3, 30, 4, 1])
    })

    test('forgets exactly the acknowledged entries, whatever order the acknowledgements come in', ({ outbox }) => {
      const seqs = Array.from({ length: 40 }, (_, n) => outbox.append(entry(n, n % 3 === 0 ? 'a' : 'b')))
      const acked = seqs.filter((_, i) => i % 5 !== 2) // leave gaps
      for (const s of [...acked].reverse()) outbox.ack(s)
      const left = outbox.peek(0, 100).map((e) => e.seq)
      expect(left).toEqual(seqs.filter((_, i) => i % 5 === 2))
      const s = outbox.stats()
      expect([s.entries, s.bytes, s.delivered]).toEqual([8, 80, 32])
    })

    test('reads a long backlog in order, and after acknowledgements starts again from the oldest entry left', ({ outbox }) => {
      // More entries than any in-memory shortcut holds, read the way the pump does: in pages.
      const seqs = Array.from({ length: 1_500 }, (_, n) => outbox.append(entry(n)))
      const read: number[] = []
      for (let after = 0; ; ) {
        const page = outbox.peek(after, 512)
        if (page.length === 0) break
        read.push(...page.map((e) => e.seq))
        after = page.at(-1)!.seq
      }
      expect(read).toEqual(seqs)
      for (const s of seqs.slice(0, 1_400)) outbox.ack(s)
      // A pump starting over (a reconnect) gets only what was not acknowledged.
      expect(outbox.peek(0, 512).map((e) => e.seq)).toEqual(seqs.slice(1_400))
      const more = outbox.append(entry(9_999))
      expect(outbox.peek(seqs.at(-1)!, 10).map((e) => e.seq)).toEqual([more])
      for (const s of [...seqs.slice(1_400), more]) outbox.ack(s)
      expect(outbox.peek(0, 10)).toEqual([])
    })

    test('discards an entry that can never be delivered: gone from peek, counted under its reason, not as delivered', ({ outbox }) => {
      const seqs = [1, 2, 3, 4].map((n) => outbox.append(entry(n, 'events', n === 2 ? 50 : 10)))
      // Read ahead first, as the pump does: the discarded entry must not come back from a copy held in memory.
      expect(outbox.peek(0, 10).length).toBe(4)
      outbox.discard(seqs[1]!, 'too-large:events')
      outbox.discard(seqs[1]!, 'too-large:events') // twice is harmless
      outbox.discard(9_999, 'too-large:events') // and one that is not there
      expect(outbox.peek(0, 10).map((e) => e.topic)).toEqual(['t/1', 't/3', 't/4'])
      expect(outbox.peek(seqs[0]!, 10).map((e) => e.topic)).toEqual(['t/3', 't/4'])
      outbox.ack(seqs[0]!)
      const s = outbox.stats()
      expect([s.entries, s.bytes, s.delivered]).toEqual([2, 20, 1])
      expect(s.dropped).toEqual({ 'too-large:events': 1 })
    })

    test('refuses a new entry when a reject stream is full, and counts it', ({ outbox }) => {
      outbox.append(entry(1, 'alarms', 40))
      outbox.append(entry(2, 'alarms', 40))
      let err: unknown
      try {
        outbox.append(entry(3, 'alarms', 40))
      } catch (e) {
        err = e
      }
      expect(isOutpostError(err, ErrorCode.OUTBOX_FULL)).toBe(true)
      expect(outbox.peek(0, 10).map((e) => e.topic)).toEqual(['t/1', 't/2'])
      expect(outbox.stats().rejected).toBe(1)
    }, { alarms: { maxBytes: 100, policy: 'reject' } })

    test('drops the oldest entries of a full dropOldest stream only, and counts them', ({ outbox }) => {
      outbox.append(entry(1, 'events', 40))
      outbox.append(entry(2, 'other', 40))
      outbox.append(entry(3, 'events', 40))
      outbox.append(entry(4, 'events', 40)) // 120 > 100: the oldest event goes
      expect(outbox.peek(0, 10).map((e) => e.topic)).toEqual(['t/2', 't/3', 't/4'])
      expect(outbox.stats().dropped).toEqual({ 'full:events': 1 })
    }, { events: { maxBytes: 100, policy: 'dropOldest' } })

    test('keeps the newest entries of a full stream that shares the outbox with others, over many drops', ({ outbox }) => {
      // Runs of the other stream sit before, between and after the full stream's entries.
      const kept: string[] = []
      for (let n = 0; n < 300; n++) {
        const stream = n % 7 < 3 ? 'other' : 'events'
        outbox.append(entry(n, stream))
        if (stream === 'other') kept.push(`t/${n}`)
      }
      const events = Array.from({ length: 300 }, (_, n) => n).filter((n) => n % 7 >= 3).map((n) => `t/${n}`)
      const topics = outbox.peek(0, 1_000).map((e) => e.topic)
      expect(topics.filter((t) => kept.includes(t))).toEqual(kept)
      expect(topics.filter((t) => !kept.includes(t))).toEqual(events.slice(-10))
      const s = outbox.stats()
      expect(s.dropped).toEqual({ 'full:events': events.length - 10 })
      expect([s.entries, s.bytes]).toEqual([kept.length + 10, (kept.length + 10) * 10])
    }, { events: { maxBytes: 100, policy: 'dropOldest' } })

    test('hands out what was appended inside its transaction once the transaction is done, with the seqs append returned', ({ outbox }) => {
      const first = outbox.append(entry(1))
      const seqs = outbox.transaction.run(() => [2, 3, 4].map((n) => outbox.append(entry(n))))
      expect(seqs[0]!).toBeGreaterThan(first)
      expect(outbox.peek(0, 10).map((e) => [e.seq, e.topic])).toEqual([[first, 't/1'], ...seqs.map((s, i) => [s, `t/${i + 2}`])])
      expect(outbox.stats()).toMatchObject({ entries: 4, bytes: 40, appended: 4 })
    })

    if (opts.durable) {
      test('undoes what was appended inside a transaction that failed, and keeps the rest', ({ outbox }) => {
        outbox.append(entry(1))
        expect(() =>
          outbox.transaction.run(() => {
            outbox.append(entry(2))
            throw new Error('the settlement failed')
          }),
        ).toThrow('the settlement failed')
        outbox.transaction.run(() => {
          outbox.append(entry(3))
          // A failed inner run (a savepoint) takes only its own entry along.
          expect(() =>
            outbox.transaction.run(() => {
              outbox.append(entry(4))
              throw new Error('its event could not be kept')
            }),
          ).toThrow('could not be kept')
          outbox.append(entry(5))
        })
        expect(outbox.peek(0, 10).map((e) => e.topic)).toEqual(['t/1', 't/3', 't/5'])
        expect(outbox.stats()).toMatchObject({ entries: 3, bytes: 30 })
      })

      test('keeps entries and their order across a reopen', ({ outbox, reopen }) => {
        for (let n = 1; n <= 5; n++) outbox.append(entry(n))
        outbox.ack(outbox.peek(0, 1)[0]!.seq)
        const again = reopen!()
        expect(again.peek(0, 10).map((e) => e.topic)).toEqual(['t/2', 't/3', 't/4', 't/5'])
        expect(again.stats().bytes).toBe(40)
        again.append(entry(6))
        expect(again.peek(0, 10).at(-1)!.topic).toBe('t/6')
      })

      test('a discarded entry stays gone across a reopen', ({ outbox, reopen }) => {
        const seqs = [1, 2, 3].map((n) => outbox.append(entry(n)))
        outbox.discard(seqs[0]!, 'too-large:events')
        const again = reopen!()
        expect(again.peek(0, 10).map((e) => e.topic)).toEqual(['t/2', 't/3'])
        expect(again.stats()).toMatchObject({ entries: 2, bytes: 20 })
      })
    }
  })
}
