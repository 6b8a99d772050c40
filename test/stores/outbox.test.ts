import { describe, expect, it } from 'vitest'
import { createMemoryOutbox, type OutboxStreamLimits } from '../../runtime/index.js'
import { createSqliteOutbox, type DeviceDatabase } from '../../runtime/stores/sqlite/index.js'
import { describeOutboxContract } from '../contracts/outbox.contract.js'
import { storeOnTempDatabase } from '../helpers/sqlite.js'

describeOutboxContract('memory', {
  create: (limits) => ({ outbox: createMemoryOutbox({ limits }), dispose: () => {} }),
  durable: false,
})

describeOutboxContract('sqlite', {
  create(limits) {
    const t = storeOnTempDatabase((d) => createSqliteOutbox(d, { limits }))
    return { outbox: t.store, reopen: t.reopen, dispose: t.dispose }
  },
  durable: true,
})

describe('sqlite outbox inside a larger transaction', () => {
  const entry = (n: number) => ({ stream: 'events', topic: `t/${n}`, frame: new Uint8Array(10).fill(n), retain: false })

  it('brings back what a rolled-back append dropped, and drops it again on the next append', () => {
    let database!: DeviceDatabase
    const t = storeOnTempDatabase((d) => {
      database = d
      return createSqliteOutbox(d, { limits: { events: { maxBytes: 30, policy: 'dropOldest' } } })
    })
    try {
      const outbox = t.store
      for (let n = 1; n <= 3; n++) outbox.append(entry(n))
      expect(() =>
        database.transaction(() => {
          outbox.append(entry(4)) // drops t/1
          outbox.append(entry(5)) // drops t/2
          throw new Error('the settlement failed')
        }),
      ).toThrow('the settlement failed')
      expect(outbox.peek(0, 10).map((e) => e.topic)).toEqual(['t/1', 't/2', 't/3'])
      expect(outbox.stats()).toMatchObject({ entries: 3, bytes: 30 })
      outbox.append(entry(6))
      expect(outbox.peek(0, 10).map((e) => e.topic)).toEqual(['t/2', 't/3', 't/6'])
      expect(outbox.stats()).toMatchObject({ entries: 3, bytes: 30 })
    } finally {
      t.dispose()
    }
  })

  /** An outbox on a temporary database, with the database, for one test. */
  const withOutbox = (limits: Record<string, OutboxStreamLimits> | undefined, fn: (outbox: ReturnType<typeof createSqliteOutbox>, d: DeviceDatabase, reopen: () => ReturnType<typeof createSqliteOutbox>) => void): void => {
    let database!: DeviceDatabase
    const t = storeOnTempDatabase((d) => {
      database = d
      return createSqliteOutbox(d, { limits })
    })
    try {
      fn(t.store, database, t.reopen)
    } finally {
      t.dispose()
    }
  }

  it('stores many appends of one transaction together, with the seqs append returned, across a reopen', () => {
    withOutbox(undefined, (outbox, d, reopen) => {
      outbox.append(entry(0))
      const seqs = d.transaction(() => Array.from({ length: 37 }, (_, i) => outbox.append(entry(i + 1))))
      expect(seqs).toEqual(Array.from({ length: 37 }, (_, i) => seqs[0]! + i))
      expect(outbox.stats()).toMatchObject({ entries: 38, bytes: 380, appended: 38 })
      const again = reopen()
      const read = again.peek(0, 100)
      expect(read.map((e) => e.topic)).toEqual(Array.from({ length: 38 }, (_, i) => `t/${i}`))
      expect(read.slice(1).map((e) => e.seq)).toEqual(seqs)
      expect(read.every((e, i) => e.frame.length === 10 && e.frame[0] === i)).toBe(true)
      expect(again.append(entry(99))).toBe(seqs.at(-1)! + 1)
    })
  })

  it('writes a long transaction out as it goes, and still takes it all back when it rolls back', () => {
    withOutbox(undefined, (outbox, d, reopen) => {
      const seqs = d.transaction(() => Array.from({ length: 600 }, (_, i) => outbox.append(entry(i % 200))))
      expect(seqs.every((q, i) => i === 0 || q === seqs[i - 1]! + 1)).toBe(true)
      expect(() =>
        d.transaction(() => {
          for (let i = 0; i < 600; i++) outbox.append(entry(7))
          throw new Error('power went')
        }),
      ).toThrow('power went')
      expect(outbox.stats()).toMatchObject({ entries: 600, bytes: 6_000 })
      const read = reopen().peek(0, 1_000)
      expect(read.map((e) => e.seq)).toEqual(seqs)
      expect(read.every((e, i) => e.frame[0] === i % 200)).toBe(true)
    })
  })

  it('takes back a rolled-back inner transaction that wrote some of its appends out already', () => {
    withOutbox(undefined, (outbox, d, reopen) => {
      d.transaction(() => {
        for (let i = 0; i < 300; i++) outbox.append(entry(1)) // 256 written out, 44 waiting
        expect(() =>
          d.transaction(() => {
            for (let i = 0; i < 400; i++) outbox.append(entry(2)) // 212 written out with the 44, 188 waiting
            throw new Error('refused')
          }),
        ).toThrow('refused')
        for (let i = 0; i < 10; i++) outbox.append(entry(3))
      })
      expect(outbox.stats()).toMatchObject({ entries: 310, bytes: 3_100 })
      const read = reopen().peek(0, 1_000)
      expect(read.map((e) => e.frame[0])).toEqual([...Array(300).fill(1), ...Array(10).fill(3)])
      expect(read.every((e, i) => i === 0 || e.seq > read[i - 1]!.seq)).toBe(true)
    })
  })

  it('keeps the appends around a rolled-back inner transaction, and only those', () => {
    withOutbox(undefined, (outbox, d, reopen) => {
      d.transaction(() => {
        for (let n = 1; n <= 20; n++) outbox.append(entry(n))
        expect(() =>
          d.transaction(() => {
            for (let n = 21; n <= 25; n++) outbox.append(entry(n))
            throw new Error('this result event is refused')
          }),
        ).toThrow('refused')
        outbox.append(entry(26))
      })
      expect(outbox.stats()).toMatchObject({ entries: 21, bytes: 210 })
      const read = reopen().peek(0, 100)
      expect(read.map((e) => e.topic)).toEqual([...Array.from({ length: 20 }, (_, i) => `t/${i + 1}`), 't/26'])
      expect(read.every((e, i) => i === 0 || e.seq > read[i - 1]!.seq)).toBe(true)
    })
  })

  it('drops the oldest entries of a full stream even when they were appended in the same transaction', () => {
    withOutbox({ events: { maxBytes: 50, policy: 'dropOldest' } }, (outbox, d, reopen) => {
      outbox.append(entry(1))
      d.transaction(() => {
        for (let n = 2; n <= 9; n++) outbox.append(entry(n))
      })
      expect(outbox.stats()).toMatchObject({ entries: 5, bytes: 50, dropped: { 'full:events': 4 } })
      expect(reopen().peek(0, 10).map((e) => e.topic)).toEqual(['t/5', 't/6', 't/7', 't/8', 't/9'])
    })
  })

  it('deletes what was acknowledged in the commit of the next transaction that appends, and again later when that one rolls back', () => {
    withOutbox(undefined, (outbox, d) => {
      const rows = (): number[] => d.db.prepare<[], number>('SELECT seq FROM outbox ORDER BY seq').pluck().all()
      const seqs = [1, 2, 3].map((n) => outbox.append(entry(n)))
      for (const e of outbox.peek(0, 10)) outbox.ack(e.seq)
      expect(rows()).toEqual(seqs) // acknowledged: deleted later, with no commit of their own yet
      expect(() =>
        d.transaction(() => {
          outbox.append(entry(4))
          d.beforeCommit(() => {
            throw new Error('a later write failed') // after the outbox deleted the acknowledged entries
          })
        }),
      ).toThrow('a later write failed')
      expect(rows()).toEqual(seqs)
      expect(outbox.peek(seqs.at(-1)!, 10)).toEqual([])
      const five = d.transaction(() => outbox.append(entry(5)))
      expect(rows()).toEqual([five])
      expect(outbox.stats()).toMatchObject({ entries: 1, bytes: 10, delivered: 3 })
      expect(outbox.peek(seqs.at(-1)!, 10).map((e) => e.topic)).toEqual(['t/5'])
    })
  })

  it('empties the table in one step only when every row in it was acknowledged', () => {
    withOutbox(undefined, (outbox, d) => {
      const rows = (): number[] => d.db.prepare<[], number>('SELECT seq FROM outbox ORDER BY seq').pluck().all()
      const seqs = [1, 2, 3, 4, 5, 6].map((n) => outbox.append(entry(n)))
      // One run acknowledged, with rows after it that were not: only the run goes.
      for (const s of seqs.slice(0, 3)) outbox.ack(s)
      const seven = d.transaction(() => outbox.append(entry(7)))
      expect(rows()).toEqual([...seqs.slice(3), seven])
      // Every row acknowledged, in any order and some twice: all go, the new one stays.
      for (const s of [seven, ...seqs.slice(3).reverse(), seven]) outbox.ack(s)
      const eight = d.transaction(() => outbox.append(entry(8)))
      expect(rows()).toEqual([eight])
      expect(outbox.stats()).toMatchObject({ entries: 1, bytes: 10, delivered: 7 })
      expect(outbox.peek(0, 10).map((e) => e.topic)).toEqual(['t/8'])
      // Acknowledged with a gap: the unacknowledged row stays.
      const more = [9, 10, 11].map((n) => outbox.append(entry(n)))
      for (const s of [eight, more[0]!, more[2]!]) outbox.ack(s)
      const twelve = d.transaction(() => outbox.append(entry(12)))
      expect(rows()).toEqual([more[1], twelve])
      expect(outbox.stats()).toMatchObject({ entries: 2, bytes: 20, delivered: 10 })
    })
  })

  it('stores an append made inside a transaction opened on the connection directly', () => {
    withOutbox(undefined, (outbox, d, reopen) => {
      d.db.transaction(() => {
        outbox.append(entry(1))
        outbox.append(entry(2))
      })()
      expect(reopen().peek(0, 10).map((e) => e.topic)).toEqual(['t/1', 't/2'])
    })
  })
})
