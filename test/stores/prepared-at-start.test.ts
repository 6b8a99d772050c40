// What a device's stores prepare when they are made (20-50 µs a statement, on every start before
// the device is ready): the statements of the common path; those for failures, cancelling,
// purging, metrics and full streams wait for their first use, and work the same then.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createSqliteInbox, createSqliteOutbox, createSqliteQueueStore, createSqliteStateStore, openDeviceDatabase, type DeviceDatabase } from '../../runtime/stores/sqlite/index.js'

describe('statements a device prepares at start', () => {
  let dir: string
  let database: DeviceDatabase
  const prepared: string[] = []
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'outpost-prepared-'))
    database = openDeviceDatabase({ path: path.join(dir, 'device.db') })
    // Counted on this connection only.
    const own = database.db.prepare.bind(database.db)
    prepared.length = 0
    database.db.prepare = ((sql: string) => {
      prepared.push(sql)
      return own(sql)
    }) as typeof database.db.prepare
  })
  afterEach(() => {
    database.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('the four stores prepare 28 of their 59 statements when made; the rest when first run, and run as before', () => {
    const queue = createSqliteQueueStore(database)
    createSqliteOutbox(database)
    createSqliteInbox(database)
    const state = createSqliteStateStore(database)
    expect(prepared.length).toBeLessThanOrEqual(28)
    const later = ["state = 'dead' ORDER BY updated_at", "attempt = 0, run_at = ?", 'DELETE FROM jobs WHERE queue = ?', 'SELECT COUNT(*) FROM jobs', "error_code = 'CANCELLED'", 'ORDER BY seq LIMIT 64', 'DELETE FROM inbox WHERE rowid', 'DELETE FROM kv']
    for (const part of later) expect(prepared.filter((sql) => sql.includes(part)), part).toEqual([])

    const now = 1_000
    const { job } = queue.enqueue({ queue: 'q', payload: { n: 1 } }, now)
    const [leased] = queue.lease('q', 1, now, 30_000)
    expect(leased?.id).toBe(job.id)
    expect(queue.moveToDead(job.id, leased!.attempt, 'broken', now + 1, { code: 'INTERNAL', reason: 'failed' })).toBe(true)
    expect(queue.listDead('q', 10).map((j) => [j.id, j.error, j.deadReason])).toEqual([[job.id, 'broken', 'failed']])
    expect(queue.redrive('q', now + 2)).toBe(1)
    expect(queue.metrics('q', now + 2)).toMatchObject({ ready: 1, dead: 0 })
    state.set('s', 'a', 1)
    state.set('s', 'b', 2)
    state.delete('s', 'a')
    expect(state.list('s')).toEqual([{ key: 'b', value: 2 }])
    // Each once, however often it runs.
    const before = prepared.length
    queue.listDead('q', 10)
    queue.listDead('q', 10)
    expect(prepared.length).toBe(before)
  })
})
