import { existsSync, renameSync } from 'node:fs'
import Database from 'better-sqlite3'
import { ErrorCode, OutpostError } from '../../errors.js'
import { MIGRATIONS, type Migration } from './migrations.js'

/** How much a power cut may take: see runtime/stores/sqlite/README.md. */
export type Synchronous = 'NORMAL' | 'FULL'

export interface DeviceDatabaseOptions {
  /** File path, or ':memory:' for tests. */
  path: string
  /** WAL durability (default NORMAL). FULL also survives a power cut for the last commits. */
  synchronous?: Synchronous
  /**
   * What to do with a corrupt or unreadable file (default 'fresh'). Either way the file (and its
   * -wal/-shm) is first moved aside to `<path>.corrupt-<time>`, never deleted; then 'fresh'
   * starts an empty database and 'fail' throws STORE_CORRUPT.
   */
  onCorrupt?: 'fresh' | 'fail'
  /**
   * SQLite page cache, KiB (default 2048). better-sqlite3 sets 16 MiB per connection, which a
   * device does not have to spare; the outbox and queues read sequentially and need little.
   */
  cacheSizeKiB?: number
  /** Schema steps (default: Outpost's). */
  migrations?: readonly Migration[]
  now?: () => number
}

/** The device's one SQLite database. */
export interface DeviceDatabase {
  readonly db: Database.Database
  readonly path: string
  /** Schema version after migrations. */
  readonly version: number
  /** Where a corrupt file was moved at open, if that happened. */
  readonly quarantinedTo?: string
  /** Registers work to finish before the database closes (e.g. deleting acknowledged outbox entries). */
  beforeClose(fn: () => void): void
  /**
   * Runs `fn` as one transaction (`BEGIN IMMEDIATE`), or as a savepoint inside one that is
   * open; everything it wrote is undone when it throws. Statements are prepared once, so this
   * costs two statements, not a new wrapper per call.
   */
  transaction<T>(fn: () => T): T
  /** True while a `transaction` of this object runs (not one opened on `db` directly). */
  readonly inTransaction: boolean
  /** Registers what to redo in memory if the innermost open transaction or savepoint is rolled back (e.g. recount a cache). */
  onRollback(fn: () => void): void
  /**
   * Registers work to run once inside the open transaction, just before it commits (e.g. writing
   * rows or counts gathered over its statements); the same function registered twice runs once.
   * It also runs before a savepoint opens inside the transaction, so that what it writes belongs
   * to the level it was gathered in, and a rolled-back savepoint cannot take it along. Work that
   * throws rolls the transaction back. Dropped if the transaction rolls back.
   */
  beforeCommit(fn: () => void): void
  /** True once closed. */
  readonly closed: boolean
  /** Runs the `beforeClose` work, then closes the database; idempotent. */
  close(): void
}

function quarantine(path: string, now: number): string {
  const target = `${path}.corrupt-${new Date(now).toISOString().replace(/[:.]/g, '-')}`
  for (const suffix of ['', '-wal', '-shm']) {
    if (existsSync(path + suffix)) renameSync(path + suffix, target + suffix)
  }
  return target
}

function openChecked(path: string, synchronous: Synchronous, cacheKiB: number): Database.Database {
  const db = new Database(path)
  try {
    db.pragma('journal_mode = WAL')
    db.pragma(`cache_size = -${Math.max(64, Math.floor(cacheKiB))}`)
    db.pragma(`synchronous = ${synchronous}`)
    db.pragma('foreign_keys = ON')
    db.pragma('busy_timeout = 5000')
    const check = db.pragma('quick_check', { simple: true })
    if (check !== 'ok') throw new Error(`quick_check: ${String(check)}`)
    return db
  } catch (err) {
    db.close()
    throw err
  }
}

function migrate(db: Database.Database, migrations: readonly Migration[], path: string): number {
  const current = db.pragma('user_version', { simple: true }) as number
  const latest = migrations.at(-1)?.version ?? 0
  if (current > latest) {
    throw new OutpostError(ErrorCode.STORE_FAILED, `database ${path} has schema version ${current}, newer than this runtime's ${latest}; refusing to touch it`, { details: { current, latest } })
  }
  for (const m of migrations) {
    if (m.version <= current) continue
    db.transaction(() => {
      m.up(db)
      db.pragma(`user_version = ${m.version}`)
    })()
  }
  return Math.max(current, latest)
}

/**
 * Opens (creating if needed) the device database: WAL, the chosen `synchronous`, an integrity
 * quick-check, then schema migrations. A corrupt or unreadable file is quarantined.
 * @throws STORE_CORRUPT (onCorrupt 'fail'), STORE_FAILED (newer schema, unusable path)
 */
export function openDeviceDatabase(opts: DeviceDatabaseOptions): DeviceDatabase {
  const synchronous = opts.synchronous ?? 'NORMAL'
  const cacheKiB = opts.cacheSizeKiB ?? 2048
  const now = opts.now ?? Date.now
  const migrations = opts.migrations ?? MIGRATIONS
  let db: Database.Database
  let quarantinedTo: string | undefined
  try {
    db = openChecked(opts.path, synchronous, cacheKiB)
  } catch (cause) {
    if (opts.path === ':memory:' || !existsSync(opts.path)) {
      throw new OutpostError(ErrorCode.STORE_FAILED, `cannot open database ${opts.path}: ${(cause as Error).message}`, { cause })
    }
    quarantinedTo = quarantine(opts.path, now())
    if (opts.onCorrupt === 'fail') {
      throw new OutpostError(ErrorCode.STORE_CORRUPT, `database ${opts.path} is corrupt or unreadable (${(cause as Error).message}); moved to ${quarantinedTo}`, { cause, details: { quarantinedTo } })
    }
    db = openChecked(opts.path, synchronous, cacheKiB)
  }
  let version: number
  try {
    version = migrate(db, migrations, opts.path)
  } catch (err) {
    db.close()
    throw err
  }
  let closed = false
  const hooks: (() => void)[] = []
  const begin = db.prepare('BEGIN IMMEDIATE')
  const commit = db.prepare('COMMIT')
  const rollback = db.prepare('ROLLBACK')
  const savepoint = db.prepare('SAVEPOINT outpost')
  const release = db.prepare('RELEASE outpost')
  const rollbackTo = db.prepare('ROLLBACK TO outpost')
  // One list of rollback work per open level: a released savepoint hands its list to the level below.
  const undo: (() => void)[][] = []
  let committing = new Set<() => void>()
  const runCommitting = (): void => {
    while (committing.size > 0) {
      const fns = committing
      committing = new Set()
      for (const fn of fns) fn()
    }
  }
  const rolledBack = (): void => {
    for (const fn of undo.pop() ?? []) fn()
  }
  return {
    db,
    path: opts.path,
    version,
    quarantinedTo,
    beforeClose: (fn) => void hooks.push(fn),
    onRollback: (fn) => void undo.at(-1)?.push(fn),
    beforeCommit: (fn) => void committing.add(fn),
    transaction<T>(fn: () => T): T {
      const nested = db.inTransaction
      // The outermost level of this object's transactions (a savepoint when someone opened one
      // on `db` directly) runs the work registered before commit.
      const outermost = undo.length === 0
      // Work gathered so far belongs to the level that is open: written before a savepoint opens.
      if (!outermost) runCommitting()
      nested ? savepoint.run() : begin.run()
      undo.push([])
      let result: T
      try {
        result = fn()
        if (outermost) runCommitting()
      } catch (err) {
        // (An I/O error may have ended the whole transaction already: then there is nothing to roll back.)
        if (nested && db.inTransaction) {
          rollbackTo.run()
          release.run()
        } else if (!nested && db.inTransaction) rollback.run()
        if (outermost) committing.clear()
        rolledBack()
        throw err
      }
      try {
        nested ? release.run() : commit.run()
      } catch (err) {
        if (db.inTransaction && !nested) rollback.run()
        if (outermost) committing.clear()
        rolledBack()
        throw err
      }
      const mine = undo.pop()!
      if (nested) undo.at(-1)?.push(...mine)
      return result
    },
    get inTransaction() {
      return undo.length > 0
    },
    get closed() {
      return closed
    },
    close() {
      if (closed) return
      for (const fn of hooks) fn()
      closed = true
      db.close()
    },
  }
}
