import { describe, expect, it } from 'vitest'
import { createMemoryOutbox } from '../../runtime/index.js'
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
})
