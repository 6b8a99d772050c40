import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { createMemoryQueueStore } from '../../runtime/index.js'
import { createSqliteQueueStore, MIGRATIONS, openDeviceDatabase } from '../../runtime/stores/sqlite/index.js'
import { describeQueueStoreContract } from '../contracts/queue-store.contract.js'
import { storeOnTempDatabase } from '../helpers/sqlite.js'

const T0 = 1_732_350_000_000
const LATEST = MIGRATIONS.at(-1)!.version
const LEASE_MS = 60_000

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
      expect(d.version).toBe(LATEST)
      expect(['a', 'b', 'c'].map((q) => store.metrics(q, T0).completed)).toEqual([2, 1, 0])
      expect(store.isPaused('b')).toBe(true)
      expect(store.queues()).toEqual(['a', 'b', 'c'])
      d.close()
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('sqlite queue store: schema v9 (jobs numbered, ids carry the number)', () => {
  /** A database as schema v8 left it, holding `rows`; then opened with every migration. */
  const fromV8 = (file: string, rows: [id: string, queue: string, state: string, extra?: Record<string, unknown>][]) => {
    const v8 = openDeviceDatabase({ path: file, migrations: MIGRATIONS.filter((m) => m.version <= 8) })
    const insert = v8.db.prepare(
      `INSERT INTO jobs (id, queue, state, payload, priority, run_at, attempt, lease_until, idem_key, created_at, updated_at)
       VALUES (@id, @queue, @state, @payload, @priority, @run_at, @attempt, @lease_until, @idem_key, @created_at, @created_at)`,
    )
    rows.forEach(([id, queue, state, extra], i) =>
      insert.run({ id, queue, state, payload: Buffer.from([i]), priority: 0, run_at: T0, attempt: state === 'leased' ? 1 : 0, lease_until: state === 'leased' ? T0 + 60_000 : null, idem_key: null, created_at: T0 + i, ...extra }),
    )
    v8.db.prepare("INSERT INTO queues (queue, paused, completed) VALUES ('q', 0, 1)").run()
    v8.close()
    return openDeviceDatabase({ path: file })
  }

  it('keeps the jobs of a v8 database under their ids, even ids that look like new ones', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-v9-'))
    try {
      // Ids of v8 were message ids: their last 8 characters parse as a number, here the very
      // numbers that new jobs get next.
      const old = (k: number): string => `01JDQ0000000ABCDEFGH0000000${k}`.slice(-26)
      const d = fromV8(path.join(dir, 'device.db'), [
        [old(5), 'q', 'completed', { created_at: T0 - 10_000, updated_at: T0 - 10_000 }],
        [old(6), 'q', 'leased'],
        [old(7), 'q', 'ready', { priority: 5, idem_key: 'k' }],
        ['job-from-elsewhere', 'q', 'dead'],
        [old(8), 'q', 'ready'],
      ])
      expect(d.version).toBe(LATEST)
      const store = createSqliteQueueStore(d)
      expect([old(5), old(6), old(7), 'job-from-elsewhere', old(8)].map((id) => store.get(id)?.state)).toEqual(['completed', 'leased', 'ready', 'dead', 'ready'])
      // New jobs: their numbers follow the old rows', their ids are their own.
      const fresh = [1, 2, 3, 4].map((i) => store.enqueue({ queue: 'q', payload: `new-${i}`, runAt: T0 + 100 }, T0 + 1_000).job)
      expect(new Set(fresh.map((j) => j.id)).size).toBe(4)
      expect(fresh.map((j) => store.get(j.id)?.payload)).toEqual(['new-1', 'new-2', 'new-3', 'new-4'])
      expect(store.get(old(7))?.payload).toEqual(2)
      // Each verb finds the old jobs: heartbeat and completion of a lease taken before the upgrade…
      expect(store.heartbeat(old(6), 1, T0 + 1_000, 60_000)).toBe(true)
      expect(store.complete(old(6), 1, 'done', T0 + 1_001)).toBe(true)
      expect(store.get(old(6))).toMatchObject({ state: 'completed', output: 'done' })
      // …the idempotency key, the run order, a redrive.
      expect(store.enqueue({ queue: 'q', payload: 'again', idempotencyKey: 'k' }, T0 + 1_002)).toMatchObject({ created: false, job: { id: old(7) } })
      expect(store.lease('q', 2, T0 + 1_003, 60_000).map((j) => j.id)).toEqual([old(7), old(8)])
      expect(store.redrive('q', T0 + 1_004, ['job-from-elsewhere'])).toBe(1)
      expect(store.metrics('q', T0 + 1_005)).toMatchObject({ completed: 2, leased: 2, ready: 5 })
      // Pruning reaches old rows and forgets their ids; the new jobs stay found.
      expect(store.pruneCompleted('q', T0 - 5_000)).toBe(1)
      expect(store.get(old(5))).toBeUndefined()
      expect(fresh.map((j) => store.get(j.id)?.state)).toEqual(['ready', 'ready', 'ready', 'ready'])
      d.close()
      // And after a restart.
      const again = openDeviceDatabase({ path: path.join(dir, 'device.db') })
      const reopened = createSqliteQueueStore(again)
      expect([old(6), old(7), fresh[3]!.id].map((id) => reopened.get(id)?.state)).toEqual(['completed', 'leased', 'ready'])
      again.close()
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('gives every job its own number when two connections enqueue into one file', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-v9-'))
    const file = path.join(dir, 'device.db')
    // The second as a tool beside the device would open it (a device takes the file's lock).
    const [d1, d2] = [openDeviceDatabase({ path: file }), openDeviceDatabase({ path: file, access: 'tool' })]
    try {
      const [a, b] = [createSqliteQueueStore(d1), createSqliteQueueStore(d2)]
      // Both stores start from the same last number: each insert of one takes a number the other
      // was about to give.
      const ids = Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? a : b).enqueue({ queue: 'q', payload: i }, T0 + i).job.id)
      expect(new Set(ids).size).toBe(40)
      expect(ids.map((id) => [a.get(id)?.payload, b.get(id)?.payload])).toEqual(ids.map((_, i) => [i, i]))
      expect(a.metrics('q', T0 + 100).ready).toBe(40)
    } finally {
      d1.close()
      d2.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('never prunes a job that finished after the cutoff, when the clock was set back', () => {
    const t = storeOnTempDatabase((d) => createSqliteQueueStore(d))
    try {
      const store = t.store
      // Made in this order, with the clock set back 10 s between the second and the third.
      const made = [T0 + 10_000, T0 + 10_001, T0, T0 + 1].map((at, i) => store.enqueue({ queue: 'q', payload: i }, at).job)
      const leased = store.lease('q', 4, T0 + 20_000, LEASE_MS)
      const finishedAt = [T0 + 10_002, T0 + 30_000, T0 + 2, T0 + 30_000]
      leased.forEach((j) => store.complete(j.id, j.attempt, null, finishedAt[made.findIndex((m) => m.id === j.id)]!))
      // Rows are walked in the order they were made, up to the first made at the cutoff or later:
      // with the clock set back, pruning may stop early, and never deletes a job that finished
      // after the cutoff.
      const early = store.pruneCompleted('q', T0 + 5_000)
      expect([made[0], made[1], made[3]].map((j) => store.get(j!.id)?.state)).toEqual(['completed', 'completed', 'completed'])
      expect(store.metrics('q', T0 + 40_000).completed).toBe(4 - early)
      // Once the cutoff is past every creation time, what finished before it goes.
      expect(store.pruneCompleted('q', T0 + 20_000)).toBe(2 - early)
      expect(made.map((j) => store.get(j.id)?.state)).toEqual([undefined, 'completed', undefined, 'completed'])
      expect(store.metrics('q', T0 + 40_000).completed).toBe(2)
    } finally {
      t.dispose()
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
        store.transaction.run(() => {
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
