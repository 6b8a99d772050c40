import { copyFileSync, existsSync, renameSync, statSync } from 'node:fs'
import Database from 'better-sqlite3'
import { ErrorCode, OutpostError } from '../../errors.js'
import { lockDeviceDatabase, type DeviceLock } from './device-lock.js'
import { MIGRATIONS, type Migration } from './migrations.js'
import { cannotWrite, isDamaged, toStoreError } from './store-error.js'
import { headerOf, isSqliteHeader, openReadOnly } from './read-only-open.js'
import { checkWal, type WalCheck } from './wal-check.js'

/** How much a power cut may take: see runtime/stores/sqlite/README.md. */
export type Synchronous = 'NORMAL' | 'FULL'

/**
 * Who opens the database. `device` (the default): the process that runs the device; creates the
 * file if missing, takes the device lock, moves a damaged file aside, migrates. `tool`: another
 * process working beside it (`outpost jobs redrive`): reads and writes, but the file must exist
 * with this runtime's schema, checked on a read-only connection first; never creates, locks,
 * moves, migrates or converts (sets no journal mode). `read`: inspection only
 * (read-only connection; never creates, writes, moves or locks anything). Both are for another
 * process than the device's: they read the file with Node's calls first, and closing such a
 * descriptor drops the POSIX locks SQLite holds on the file in the same process.
 */
export type DatabaseAccess = 'device' | 'tool' | 'read'

export interface DeviceDatabaseOptions {
  /** File path, or ':memory:' for tests. */
  path: string
  /** Who opens it (default 'device'); see DatabaseAccess. */
  access?: DatabaseAccess
  /** WAL durability (default NORMAL). FULL also survives a power cut for the last commits. */
  synchronous?: Synchronous
  /**
   * What to do with a file SQLite reports as damaged (SQLITE_CORRUPT, SQLITE_NOTADB, or an
   * integrity check that is not ok) and that is not empty; only with access 'device' (default
   * 'fresh'). Either way the file (and its -wal/-shm) is first moved aside to
   * `<path>.corrupt-<time>`, never deleted; then 'fresh' starts an empty database and 'fail'
   * throws STORE_CORRUPT. Any other failure leaves the file where it is.
   */
  onCorrupt?: 'fresh' | 'fail'
  /** Integrity check at open, access 'device' only (default 'quick': PRAGMA quick_check; 'full': integrity_check, slower, also checks indexes against their tables). */
  integrityCheck?: 'quick' | 'full'
  /**
   * Take the device lock `<path>.lock` so that one process at a time runs a device on this file
   * (default true with access 'device' on a file; never for 'tool' and 'read').
   */
  lock?: boolean
  /** How long a statement waits for another process's lock before STORE_LOCKED (at open) or STORE_BUSY (default 5000 ms). */
  busyTimeoutMs?: number
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
  /** Where a damaged file was moved at open, if that happened, and why. */
  readonly quarantinedTo?: string
  readonly quarantineReason?: string
  /**
   * What the write-ahead log left by the last process held, when there was one (access
   * 'device'). `walCheck.damage` set: SQLite left out committed transactions; the log was
   * copied to `walCopy` first.
   */
  readonly walCheck?: WalCheck
  readonly walCopy?: string
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
  /** Runs the `beforeClose` work, then closes the database and releases the device lock; idempotent. */
  close(): void
}

const stamp = (now: number): string => new Date(now).toISOString().replace(/[:.]/g, '-')

function quarantine(path: string, now: number): string {
  const target = `${path}.corrupt-${stamp(now)}`
  for (const suffix of ['', '-wal', '-shm']) {
    if (existsSync(path + suffix)) renameSync(path + suffix, target + suffix)
  }
  return target
}

/** Damage SQLite reported, as an error of its own kind (it alone may lead to a quarantine). */
class Damaged extends Error {
  override name = 'Damaged'
}

interface OpenSettings {
  access: DatabaseAccess
  synchronous: Synchronous
  cacheKiB: number
  busyMs: number
  check: 'quick' | 'full'
}

/** An open connection and how to close it (a read-only one may have a private copy to remove). */
interface Opened {
  db: Database.Database
  close(): void
}

/** The tables each schema version has: the migrations run on an empty database in memory. */
function tablesOf(migrations: readonly Migration[], version: number): string[] {
  const mem = new Database(':memory:')
  try {
    for (const m of migrations) {
      if (m.version > version) break
      m.up(mem)
    }
    return mem.prepare(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`).pluck().all() as string[]
  } finally {
    mem.close()
  }
}

/**
 * Checks, on a read-only connection, that a file is a device database this runtime can work
 * on: a user_version from 1, the tables of that schema version (of this runtime's latest, for
 * a newer one), and this runtime's version.
 * @throws STORE_FAILED with details.notDevice (not a device database), or a newer or older schema
 */
function checkDeviceSchema(db: Database.Database, migrations: readonly Migration[], path: string): void {
  const current = db.pragma('user_version', { simple: true }) as number
  const latest = migrations.at(-1)?.version ?? 0
  const notDevice = (reason: string): OutpostError =>
    new OutpostError(ErrorCode.STORE_FAILED, `${path} is not a device database (${reason}); nothing was changed`, { details: { notDevice: true, reason } })
  if (current <= 0) throw notDevice('no Outpost schema in it')
  const have = new Set(db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table'`).pluck().all() as string[])
  const missing = tablesOf(migrations, Math.min(current, latest)).filter((t) => !have.has(t))
  if (missing.length > 0) throw notDevice(`no Outpost tables in it: ${missing.join(', ')} missing`)
  if (current > latest) {
    throw new OutpostError(ErrorCode.STORE_FAILED, `database ${path} has schema version ${current}, newer than this runtime's ${latest}; it was left as it is (update the runtime)`, { details: { current, latest } })
  }
  if (current < latest) throw new OutpostError(ErrorCode.STORE_FAILED, `database ${path} has schema version ${current}, older than this runtime's ${latest}; start the device once to update it (nothing was changed)`, { details: { current, latest } })
}

/**
 * Opens a file for access 'read' or 'tool' without changing it before it is known to be a
 * device database of this runtime's schema: that is checked on a read-only connection (see
 * openReadOnly: nothing is created beside the file); 'read' then keeps that connection, 'tool'
 * opens the file read-write, in the journal mode it has (a device database is in WAL mode; no
 * other file is converted).
 */
function openBeside(path: string, o: OpenSettings, migrations: readonly Migration[]): Opened {
  const reader = openReadOnly(path, o.busyMs)
  try {
    reader.db.pragma(`cache_size = -${Math.max(64, Math.floor(o.cacheKiB))}`)
    checkDeviceSchema(reader.db, migrations, path)
  } catch (err) {
    reader.close()
    throw err
  }
  if (o.access === 'read') return reader
  reader.close()
  const db = new Database(path, { fileMustExist: true, timeout: o.busyMs })
  try {
    db.pragma(`cache_size = -${Math.max(64, Math.floor(o.cacheKiB))}`)
    // SQLite opens a file it may not write read-only without a word, and fails only at the first write.
    if (cannotWrite(path)) throw new OutpostError(ErrorCode.STORE_READ_ONLY, `database ${path} or its folder cannot be written (read-only file, folder or file system)`)
    db.pragma(`synchronous = ${o.synchronous}`)
    db.pragma('foreign_keys = ON')
    return { db, close: () => db.close() }
  } catch (err) {
    db.close()
    throw err
  }
}

function openChecked(path: string, o: OpenSettings, migrations: readonly Migration[]): Opened {
  if (o.access !== 'device' && path !== ':memory:') return openBeside(path, o, migrations)
  const db = new Database(path, { fileMustExist: o.access !== 'device', timeout: o.busyMs })
  try {
    db.pragma(`cache_size = -${Math.max(64, Math.floor(o.cacheKiB))}`)
    // SQLite opens a file it may not write read-only without a word, and fails only at the
    // first write: say so now.
    if (path !== ':memory:' && cannotWrite(path)) throw new OutpostError(ErrorCode.STORE_READ_ONLY, `database ${path} or its folder cannot be written (read-only file, folder or file system)`)
    db.pragma('journal_mode = WAL')
    db.pragma(`synchronous = ${o.synchronous}`)
    db.pragma('foreign_keys = ON')
    if (o.access === 'device') {
      const check = db.pragma(o.check === 'full' ? 'integrity_check' : 'quick_check', { simple: true })
      if (check !== 'ok') throw new Damaged(`${o.check === 'full' ? 'integrity_check' : 'quick_check'}: ${String(check)}`)
    }
    return { db, close: () => db.close() }
  } catch (err) {
    db.close()
    throw err
  }
}

function migrate(db: Database.Database, migrations: readonly Migration[], path: string, access: DatabaseAccess): number {
  const current = db.pragma('user_version', { simple: true }) as number
  const latest = migrations.at(-1)?.version ?? 0
  if (current > latest) {
    throw new OutpostError(ErrorCode.STORE_FAILED, `database ${path} has schema version ${current}, newer than this runtime's ${latest}; it was left as it is (update the runtime)`, { details: { current, latest } })
  }
  if (access !== 'device') {
    if (current === 0) throw new OutpostError(ErrorCode.STORE_FAILED, `${path} is not a device database (no Outpost schema in it); nothing was changed`, { details: { current, latest, notDevice: true, reason: 'no Outpost schema in it' } })
    if (current < latest) throw new OutpostError(ErrorCode.STORE_FAILED, `database ${path} has schema version ${current}, older than this runtime's ${latest}; start the device once to update it (nothing was changed)`, { details: { current, latest } })
    return current
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

/** Size of a file, or -1 when it is not there. */
const sizeOf = (path: string): number => {
  try {
    return statSync(path).size
  } catch {
    return -1
  }
}

/**
 * For access 'read' and 'tool': what can be told of a file before SQLite opens it, without
 * changing it. @throws STORE_FAILED with details.missing (no such file), details.notDevice (a
 * directory, an empty file, a file that is not an SQLite database), or a storage error (cannot be read)
 */
function checkIsDatabaseFile(path: string): void {
  let stat: ReturnType<typeof statSync>
  try {
    stat = statSync(path)
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') throw new OutpostError(ErrorCode.STORE_FAILED, `no device database at ${path}`, { details: { missing: true } })
    throw toStoreError(err, path, 'open')
  }
  const notDevice = (reason: string, more: Record<string, unknown> = {}): OutpostError =>
    new OutpostError(ErrorCode.STORE_FAILED, `${path} is ${reason}, not a device database; nothing was changed`, { details: { notDevice: true, reason, ...more } })
  if (stat.isDirectory()) throw notDevice('a directory', { directory: true })
  if (!stat.isFile()) throw notDevice('not a regular file')
  if (stat.size === 0) throw notDevice('an empty file')
  let header: Buffer
  try {
    header = headerOf(path)
  } catch (err) {
    throw toStoreError(err, path, 'open')
  }
  if (!isSqliteHeader(header)) throw notDevice('not an SQLite database')
}

/**
 * Opens the device database: WAL, the chosen `synchronous`, an integrity check, then schema
 * migrations (access 'device'). Only a file that SQLite reports as damaged and that is not empty
 * is moved aside (never deleted); every other failure is a typed error that leaves it alone.
 * @throws STORE_IN_USE (another process runs this device), STORE_LOCKED (another process holds a
 *   lock past the busy wait), STORE_READ_ONLY, STORE_FULL, STORE_CORRUPT (damaged, and onCorrupt
 *   'fail' or access other than 'device'), STORE_FAILED (newer schema, missing file for 'tool' and
 *   'read', anything else)
 */
export function openDeviceDatabase(opts: DeviceDatabaseOptions): DeviceDatabase {
  const access = opts.access ?? 'device'
  const settings: OpenSettings = {
    access,
    synchronous: opts.synchronous ?? 'NORMAL',
    cacheKiB: opts.cacheSizeKiB ?? 2048,
    busyMs: opts.busyTimeoutMs ?? 5_000,
    check: opts.integrityCheck ?? 'quick',
  }
  const now = opts.now ?? Date.now
  const migrations = opts.migrations ?? MIGRATIONS
  const file = opts.path !== ':memory:'
  if (access !== 'device' && file) checkIsDatabaseFile(opts.path)
  const lock: DeviceLock | undefined = access === 'device' && file && (opts.lock ?? true) ? lockDeviceDatabase(opts.path, now) : undefined
  let opened: Opened
  let quarantinedTo: string | undefined
  let quarantineReason: string | undefined
  let walCheck: WalCheck | undefined
  let walCopy: string | undefined
  try {
    if (access === 'device' && file) {
      // Before SQLite replays the log (and later overwrites it): what it will leave out.
      walCheck = checkWal(opts.path)
      if (walCheck?.damage !== undefined) {
        walCopy = `${opts.path}-wal.damaged-${stamp(now())}`
        try {
          copyFileSync(`${opts.path}-wal`, walCopy)
        } catch {
          walCopy = undefined // a full or read-only disk: the open below says so
        }
      }
    }
    try {
      opened = openChecked(opts.path, settings, migrations)
    } catch (cause) {
      const damaged = cause instanceof Damaged || isDamaged(cause)
      if (!damaged || !file || sizeOf(opts.path) <= 0) {
        throw cause instanceof Damaged ? new OutpostError(ErrorCode.STORE_CORRUPT, `database ${opts.path} is damaged (${cause.message})`, { cause }) : toStoreError(cause, opts.path, 'open')
      }
      const why = (cause as Error).message
      if (access !== 'device') {
        throw new OutpostError(ErrorCode.STORE_CORRUPT, `${opts.path} is damaged or not a database (SQLite: ${why}); nothing was changed`, { cause, details: { reason: why } })
      }
      try {
        quarantinedTo = quarantine(opts.path, now())
      } catch (e) {
        throw new OutpostError(ErrorCode.STORE_CORRUPT, `database ${opts.path} is damaged (SQLite: ${why}) and could not be moved aside: ${(e as Error).message}`, { cause, details: { reason: why } })
      }
      quarantineReason = why
      if (opts.onCorrupt === 'fail') {
        throw new OutpostError(ErrorCode.STORE_CORRUPT, `database ${opts.path} is damaged (SQLite: ${why}); moved to ${quarantinedTo}`, { cause, details: { quarantinedTo, reason: why } })
      }
      try {
        opened = openChecked(opts.path, settings, migrations)
      } catch (e) {
        throw toStoreError(e, opts.path, 'open')
      }
    }
  } catch (err) {
    lock?.release()
    throw err
  }
  const db = opened.db
  let version: number
  try {
    version = migrate(db, migrations, opts.path, access)
  } catch (err) {
    opened.close()
    lock?.release()
    throw toStoreError(err, opts.path, 'open')
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
    quarantineReason,
    walCheck,
    walCopy,
    beforeClose: (fn) => void hooks.push(fn),
    onRollback: (fn) => void undo.at(-1)?.push(fn),
    beforeCommit: (fn) => void committing.add(fn),
    transaction<T>(fn: () => T): T {
      const nested = db.inTransaction
      // The outermost level of this object's transactions (a savepoint when someone opened one
      // on `db` directly) runs the work registered before commit.
      const outermost = undo.length === 0
      try {
        // Work gathered so far belongs to the level that is open: written before a savepoint opens.
        if (!outermost) runCommitting()
        nested ? savepoint.run() : begin.run()
      } catch (err) {
        throw outermost ? toStoreError(err, opts.path, 'run') : err
      }
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
        // SQLite's errors leave as storage errors (STORE_BUSY, STORE_FULL, …), once, at the outermost level.
        throw outermost ? toStoreError(err, opts.path, 'run') : err
      }
      try {
        nested ? release.run() : commit.run()
      } catch (err) {
        if (db.inTransaction && !nested) rollback.run()
        if (outermost) committing.clear()
        rolledBack()
        throw outermost ? toStoreError(err, opts.path, 'run') : err
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
      for (const fn of hooks) {
        try {
          fn()
        } catch {
          // Work before close is a tidy-up (deleting acknowledged outbox entries): what it could
          // not do is done again after the next start (sent again, at least once).
        }
      }
      closed = true
      opened.close()
      lock?.release()
    },
  }
}
