import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { ErrorCode, isOutpostError } from '../../runtime/index.js'
import { MIGRATIONS, openDeviceDatabase } from '../../runtime/stores/sqlite/index.js'

describe('device database', () => {
  let dir: string
  let file: string
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'outpost-db-'))
    file = path.join(dir, 'device.db')
  })
  afterEach(() => rmSync(dir, { recursive: true, force: true }))

  it('opens in WAL mode with the chosen synchronous setting and the latest schema', () => {
    const d = openDeviceDatabase({ path: file, synchronous: 'FULL' })
    expect(d.db.pragma('journal_mode', { simple: true })).toBe('wal')
    expect(d.db.pragma('synchronous', { simple: true })).toBe(2) // FULL
    expect(d.version).toBe(MIGRATIONS.at(-1)!.version)
    d.close()
    d.close() // idempotent
  })

  it('applies only the migrations a database has not seen, in order', () => {
    const seen: number[] = []
    const steps = [1, 2, 3].map((version) => ({ version, description: `step ${version}`, up: () => void seen.push(version) }))
    openDeviceDatabase({ path: file, migrations: steps.slice(0, 2) }).close()
    const d = openDeviceDatabase({ path: file, migrations: steps })
    expect(seen).toEqual([1, 2, 3])
    expect(d.version).toBe(3)
    d.close()
  })

  it('refuses a database written by a newer schema, without moving it', () => {
    const future = MIGRATIONS.at(-1)!.version + 1
    openDeviceDatabase({ path: file, migrations: [{ version: future, description: 'future', up: () => {} }] }).close()
    let err: unknown
    try {
      openDeviceDatabase({ path: file })
    } catch (e) {
      err = e
    }
    expect(isOutpostError(err, ErrorCode.STORE_FAILED)).toBe(true)
    expect(existsSync(file)).toBe(true)
  })

  it('moves a corrupt file aside and starts fresh, never deleting it', () => {
    writeFileSync(file, Buffer.from('this is not a sqlite database, just bytes '.repeat(100)))
    const d = openDeviceDatabase({ path: file, now: () => Date.UTC(2026, 10, 23) })
    expect(d.quarantinedTo).toBeDefined()
    expect(existsSync(d.quarantinedTo!)).toBe(true)
    expect(readdirSync(dir).some((f) => f.startsWith('device.db.corrupt-2026-11-23'))).toBe(true)
    expect(d.version).toBe(MIGRATIONS.at(-1)!.version)
    d.close()
  })

  it('moves a corrupt file aside and fails with STORE_CORRUPT when told to', () => {
    writeFileSync(file, Buffer.alloc(8192, 0xab))
    let err: unknown
    try {
      openDeviceDatabase({ path: file, onCorrupt: 'fail' })
    } catch (e) {
      err = e
    }
    expect(isOutpostError(err, ErrorCode.STORE_CORRUPT)).toBe(true)
    const moved = (err as { details: { quarantinedTo: string } }).details.quarantinedTo
    expect(existsSync(moved)).toBe(true)
    expect(existsSync(file)).toBe(false)
  })

  it('names the path it cannot open', () => {
    let err: unknown
    try {
      openDeviceDatabase({ path: path.join(dir, 'missing-dir', 'device.db') })
    } catch (e) {
      err = e
    }
    expect(isOutpostError(err, ErrorCode.STORE_FAILED)).toBe(true)
    expect((err as Error).message).toContain('missing-dir')
  })
  it('runs work registered before commit once, inside the transaction, and drops it on rollback', () => {
    const d = openDeviceDatabase({ path: file })
    d.db.exec('CREATE TABLE t (n INTEGER)')
    const insert = d.db.prepare('INSERT INTO t VALUES (?)')
    const count = (): number => d.db.prepare('SELECT COUNT(*) FROM t').pluck().get() as number
    let runs = 0
    const last = (): void => {
      runs++
      expect(d.db.inTransaction).toBe(true)
      insert.run(99)
    }
    d.transaction(() => {
      insert.run(1)
      d.transaction(() => d.beforeCommit(last)) // from a savepoint: still runs at the outer commit
      d.beforeCommit(last)
      expect(runs).toBe(0)
    })
    expect([runs, count()]).toEqual([1, 2])
    expect(() =>
      d.transaction(() => {
        d.beforeCommit(last)
        throw new Error('no')
      }),
    ).toThrow('no')
    d.transaction(() => insert.run(2))
    expect([runs, count()]).toEqual([1, 3]) // the rolled-back transaction's work did not carry over
    expect(() =>
      d.transaction(() => {
        insert.run(3)
        d.beforeCommit(() => {
          throw new Error('cannot write the counts')
        })
      }),
    ).toThrow('cannot write the counts')
    expect(count()).toBe(3) // work that throws rolls its transaction back
    d.close()
  })

  it('runs work registered before commit ahead of a savepoint, so a rolled-back savepoint cannot take it along', () => {
    const d = openDeviceDatabase({ path: file })
    d.db.exec('CREATE TABLE t (n INTEGER)')
    const insert = d.db.prepare('INSERT INTO t VALUES (?)')
    const rows = (): number[] => d.db.prepare('SELECT n FROM t ORDER BY n').pluck().all() as number[]
    let runs = 0
    const gathered = (): void => {
      runs++
      insert.run(1)
    }
    d.transaction(() => {
      d.beforeCommit(gathered)
      expect(() =>
        d.transaction(() => {
          expect(runs).toBe(1) // ran before the savepoint opened
          insert.run(2)
          throw new Error('inner only')
        }),
      ).toThrow('inner only')
      insert.run(3)
    })
    expect([runs, rows()]).toEqual([1, [1, 3]])
    d.close()
  })
})
