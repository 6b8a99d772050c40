import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { createMemoryQueueStore } from '../../runtime/index.js'
import { createSqliteQueueStore, MIGRATIONS, openDeviceDatabase } from '../../runtime/stores/sqlite/index.js'
import { describeQueueStoreContract } from '../contracts/queue-store.contract.js'
import { storeOnTempDatabase } from '../helpers/sqlite.js'

const T0 = 1_732_350_000_000

describeQueueStoreContract('sqlite', {
  durable: true,
  create: () => storeOnTempDatabase((d) => createSqliteQueueStore(d)),
})

describeQueueStoreContract('memory', {
  durable: false,
  create: () => ({ store: createMemoryQueueStore(), dispose: () => undefined }),
})

describe('sqlite queue store: schema v8', () => {
  it('counts the completed jobs a database had before the count was kept, per queue', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-v8-'))
    const file = path.join(dir, 'device.db')
    try {
      // A database as schema v7 left it (the store of today no longer runs on it).
      const v7 = openDeviceDatabase({ path: file, migrations: MIGRATIONS.filter((m) => m.version <= 7) })
      v7.db.prepare("INSERT INTO queues (queue, paused) VALUES ('b', 1)").run()
      const insert = v7.db.prepare("INSERT INTO jobs (id, queue, state, payload, priority, run_at, attempt, created_at, updated_at) VALUES (?, ?, ?, x'00', 0, 0, 1, 0, 0)")
      const rows = [['a', 'completed'], ['a', 'completed'], ['a', 'ready'], ['b', 'completed'], ['b', 'dead'], ['c', 'leased']]
      rows.forEach(([queue, state], i) => insert.run(`job-${i}`, queue, state))
      v7.close()
      const d = openDeviceDatabase({ path: file })
      const store = createSqliteQueueStore(d)
      expect(d.version).toBe(8)
      expect(['a', 'b', 'c'].map((q) => store.metrics(q, T0).completed)).toEqual([2, 1, 0])
      expect(store.isPaused('b')).toBe(true)
      expect(store.queues()).toEqual(['a', 'b', 'c'])
      d.close()
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('sqlite queue store: completed counts', () => {
  it('counts a completion made inside a transaction opened on the connection directly', () => {
    const t = storeOnTempDatabase((d) => ({ d, store: createSqliteQueueStore(d) }))
    try {
      const { d, store } = t.store
      store.enqueue({ queue: 'q', payload: 1 }, T0)
      const [job] = store.lease('q', 1, T0, 1_000)
      d.db.transaction(() => expect(store.complete(job!.id, job!.attempt, 'out', T0 + 1)).toBe(true))()
      expect(store.metrics('q', T0 + 2)).toMatchObject({ completed: 1, leased: 0 })
    } finally {
      t.dispose()
    }
  })

  it('keeps the count right when a transaction fails after its counts were written', () => {
    const t = storeOnTempDatabase((d) => ({ d, store: createSqliteQueueStore(d) }))
    try {
      const { d, store } = t.store
      store.enqueue({ queue: 'q', payload: 1 }, T0)
      const [job] = store.lease('q', 1, T0, 1_000)
      expect(() =>
        store.transaction(() => {
          expect(store.complete(job!.id, job!.attempt, 'out', T0 + 1)).toBe(true)
          d.transaction(() => undefined) // a savepoint: the count is written before it opens
          d.beforeCommit(() => {
            throw new Error('disk full')
          })
        }),
      ).toThrow('disk full')
      expect(store.metrics('q', T0 + 2)).toMatchObject({ completed: 0, leased: 1 })
      expect(store.complete(job!.id, job!.attempt, 'out', T0 + 3)).toBe(true)
      expect(store.metrics('q', T0 + 4)).toMatchObject({ completed: 1, leased: 0 })
    } finally {
      t.dispose()
    }
  })
})
