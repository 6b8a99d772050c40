import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import Database from 'better-sqlite3'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { ErrorCode, isOutpostError, toWireError } from '../../runtime/index.js'
import { openLogWriter } from '../helpers/log-writer.js'
import { checkWal, createSqliteInbox, createSqliteOutbox, createSqliteQueueStore, createSqliteStateStore, MIGRATIONS, openDeviceDatabase } from '../../runtime/stores/sqlite/index.js'

/** What `fn` threw. */
const thrown = (fn: () => unknown): unknown => {
  try {
    fn()
  } catch (err) {
    return err
  }
  throw new Error('did not throw')
}

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
    expect(d.quarantineReason).toContain('not a database')
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
  it('leaves a database another connection holds locked where it is: STORE_LOCKED, nothing moved, nothing lost', () => {
    const first = openDeviceDatabase({ path: file, lock: false })
    first.db.exec('CREATE TABLE keep (n INTEGER)')
    first.db.prepare('INSERT INTO keep VALUES (176)').run()
    first.close()
    const other = new Database(file)
    other.pragma('locking_mode = EXCLUSIVE')
    other.exec('BEGIN EXCLUSIVE')
    other.exec('COMMIT') // the lock stays with the connection in this mode
    const err = thrown(() => openDeviceDatabase({ path: file, busyTimeoutMs: 100 }))
    expect(isOutpostError(err, ErrorCode.STORE_LOCKED)).toBe(true)
    expect((err as { retryable: boolean }).retryable).toBe(true)
    other.close()
    expect(readdirSync(dir).filter((f) => f.includes('corrupt'))).toEqual([])
    const again = openDeviceDatabase({ path: file })
    expect(again.quarantinedTo).toBeUndefined()
    expect(again.db.prepare('SELECT n FROM keep').pluck().get()).toBe(176)
    again.close()
  })

  it('lets one device at a time open its database (STORE_IN_USE), naming the holder, until it closes', () => {
    const first = openDeviceDatabase({ path: file })
    const err = thrown(() => openDeviceDatabase({ path: file }))
    expect(isOutpostError(err, ErrorCode.STORE_IN_USE)).toBe(true)
    expect((err as Error).message).toContain(`pid ${process.pid}`)
    // Tools beside a running device do not take the lock.
    openDeviceDatabase({ path: file, access: 'read' }).close()
    openDeviceDatabase({ path: file, access: 'tool' }).close()
    first.close()
    openDeviceDatabase({ path: file }).close()
  })

  it('says what is wrong with a busy database while running (STORE_BUSY, retryable), and every store works again once it is free', () => {
    const d = openDeviceDatabase({ path: file, busyTimeoutMs: 50 })
    const state = createSqliteStateStore(d)
    const queue = createSqliteQueueStore(d)
    const outbox = createSqliteOutbox(d)
    const inbox = createSqliteInbox(d)
    const seq = outbox.append({ stream: 'events', topic: 't', frame: new Uint8Array([1]), retain: false })
    outbox.ack(seq)
    const other = new Database(file)
    other.exec('BEGIN IMMEDIATE')
    const failures = [
      thrown(() => state.set('s', 'k', 1)),
      thrown(() => queue.enqueue({ queue: 'q/w', payload: 1 }, 1)),
      thrown(() => queue.setPaused('q/w', true)),
      thrown(() => outbox.append({ stream: 'events', topic: 't', frame: new Uint8Array([2]), retain: false })),
      thrown(() => inbox.claim('m1', 'i1')),
    ]
    for (const err of failures) {
      expect(isOutpostError(err, ErrorCode.STORE_BUSY)).toBe(true)
      expect((err as { retryable: boolean }).retryable).toBe(true)
      // It may reach a remote caller: it says what happened, not where the file is.
      expect(JSON.stringify(toWireError(err))).not.toContain(dir)
    }
    // Deleting what the broker acknowledged waits for a free moment; it never throws.
    expect(outbox.stats().entries).toBe(1)
    expect(state.get('s', 'k')).toBeUndefined() // reads go on
    other.exec('COMMIT')
    other.close()
    state.set('s', 'k', 2)
    expect(state.get('s', 'k')).toBe(2)
    expect(queue.enqueue({ queue: 'q/w', payload: 1 }, 1).created).toBe(true)
    expect(outbox.stats().entries).toBe(0)
    d.close()
  })

  it('inspects read-only: a file that is not a database is an error, stays as it was, and nothing is made beside it', () => {
    const readme = path.join(dir, 'README.md')
    writeFileSync(readme, '# Outpost\n\nMessage-driven services for edge devices.\n'.repeat(40))
    const before = readFileSync(readme)
    for (const access of ['read', 'tool'] as const) {
      const err = thrown(() => openDeviceDatabase({ path: readme, access }))
      // Not a damaged database: no database at all, told by its first bytes before SQLite opens it.
      expect(isOutpostError(err, ErrorCode.STORE_FAILED)).toBe(true)
      expect((err as { details?: unknown }).details).toMatchObject({ notDevice: true, reason: 'not an SQLite database' })
      expect((err as Error).message).toContain('nothing was changed')
    }
    expect(readFileSync(readme).equals(before)).toBe(true)
    expect(readdirSync(dir)).toEqual(['README.md'])
  })

  it('does not take an empty file for a database to inspect, and leaves it empty', () => {
    writeFileSync(file, '')
    for (const access of ['read', 'tool'] as const) {
      const err = thrown(() => openDeviceDatabase({ path: file, access }))
      expect(isOutpostError(err, ErrorCode.STORE_FAILED)).toBe(true)
      expect((err as Error).message).toContain('empty')
    }
    expect(statSync(file).size).toBe(0)
    expect(readdirSync(dir)).toEqual(['device.db'])
  })

  it('reads a cleanly closed database without making a -wal or -shm file beside it', () => {
    const d = openDeviceDatabase({ path: file })
    createSqliteQueueStore(d).enqueue({ queue: 'q/w', payload: { n: 1 } }, 1)
    d.close()
    const names = readdirSync(dir).sort()
    const r = openDeviceDatabase({ path: file, access: 'read' })
    expect(createSqliteQueueStore(r).queues()).toEqual(['q/w'])
    expect(thrown(() => r.db.exec('DELETE FROM jobs'))).toBeDefined()
    r.close()
    expect(readdirSync(dir).sort()).toEqual(names)
  })

  it('reports the committed transactions a damaged write-ahead log leaves out, and keeps a copy of the log', () => {
    // A writer that dies with its log not yet checkpointed (copied while it is open).
    const src = path.join(dir, 'src.db')
    const { db: w, insert } = openLogWriter(src)
    for (let n = 0; n < 342; n++) insert.run(n, Buffer.alloc(900, n % 256))
    const whole = path.join(dir, 'whole.db')
    const damaged = path.join(dir, 'damaged.db')
    for (const f of [whole, damaged]) {
      copyFileSync(src, f)
      copyFileSync(`${src}-wal`, `${f}-wal`)
    }
    w.close()
    // One byte of a page in the middle of the log goes bad.
    const wal = readFileSync(`${damaged}-wal`)
    const frame = 24 + wal.readUInt32BE(8)
    const middle = 32 + Math.floor((wal.length - 32) / frame / 2) * frame + 24 + 200
    wal[middle] = wal[middle]! ^ 0xff
    writeFileSync(`${damaged}-wal`, wal)
    expect(checkWal(whole)?.damage).toBeUndefined()

    const ok = openDeviceDatabase({ path: whole, migrations: [] })
    expect(ok.walCheck?.damage).toBeUndefined()
    expect(ok.db.prepare('SELECT COUNT(*) FROM t').pluck().get()).toBe(342)
    ok.close()

    const d = openDeviceDatabase({ path: damaged, migrations: [], now: () => Date.UTC(2026, 10, 26) })
    const lost = d.walCheck?.damage?.lostCommits ?? 0
    expect(lost).toBeGreaterThan(100)
    const kept = d.db.prepare('SELECT COUNT(*) FROM t').pluck().get() as number
    // SQLite silently left out what the check reported.
    expect(kept).toBe(342 - lost)
    expect(d.walCopy).toBeDefined()
    expect(readFileSync(d.walCopy!).equals(wal)).toBe(true)
    d.close()
  })
  it('raises no alarm for frames an earlier checkpoint left at the end of a reused log, and reports a damaged log header', () => {
    const src = path.join(dir, 'src.db')
    const { db: w, insert } = openLogWriter(src)
    for (let n = 0; n < 300; n++) insert.run(n, Buffer.alloc(900))
    w.pragma('wal_checkpoint(PASSIVE)')
    // The log starts over from its beginning (new salts); the older frames stay behind them.
    for (let n = 300; n < 310; n++) insert.run(n, Buffer.alloc(900))
    const crashed = path.join(dir, 'crashed.db')
    const headless = path.join(dir, 'headless.db')
    for (const f of [crashed, headless]) {
      copyFileSync(src, f)
      copyFileSync(`${src}-wal`, `${f}-wal`)
    }
    w.close()
    const check = checkWal(crashed)
    expect(check?.damage).toBeUndefined()
    expect(check?.commits).toBe(10)
    const d = openDeviceDatabase({ path: crashed, migrations: [] })
    expect(d.db.prepare('SELECT COUNT(*) FROM t').pluck().get()).toBe(310)
    d.close()

    const wal = readFileSync(`${headless}-wal`)
    wal[24] = wal[24]! ^ 0xff // the header's checksum
    writeFileSync(`${headless}-wal`, wal)
    const h = openDeviceDatabase({ path: headless, migrations: [] })
    expect(h.walCheck?.damage).toEqual({ reason: 'header', offset: 0, lostCommits: -1 })
    // SQLite ignored the whole log: only what the checkpoint had copied is there.
    expect(h.db.prepare('SELECT COUNT(*) FROM t').pluck().get()).toBe(300)
    h.close()
  })
})
