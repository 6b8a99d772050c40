import { copyFileSync } from 'node:fs'
import type Database from 'better-sqlite3'
import { ErrorCode, OutpostError, errorMessage } from '../../errors.js'
import type { DeviceTransaction } from '../../ports/device-transaction.js'
import { checkIsDatabaseFile, Damaged, migrate, openChecked, quarantine, sizeOf, stamp, type OpenSettings, type Opened } from './database-open.js'
import { lockDeviceDatabase, type DeviceLock } from './device-lock.js'
import { MIGRATIONS, type Migration } from './migrations.js'
import { createSqliteTransactions } from './sqlite-transaction.js'
import { isDamaged, toStoreError } from './store-error.js'
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
  /**
   * `transaction` as the device-transaction port: give it to the stores whose writes must commit
   * together (the SQLite queue store and outbox take it from their database, so stores on one
   * database share it). See runtime/ports/device-transaction.ts.
   */
  readonly deviceTransaction: DeviceTransaction
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
      const why = errorMessage(cause)
      if (access !== 'device') {
        throw new OutpostError(ErrorCode.STORE_CORRUPT, `${opts.path} is damaged or not a database (SQLite: ${why}); nothing was changed`, { cause, details: { reason: why } })
      }
      try {
        quarantinedTo = quarantine(opts.path, now())
      } catch (e) {
        throw new OutpostError(ErrorCode.STORE_CORRUPT, `database ${opts.path} is damaged (SQLite: ${why}) and could not be moved aside: ${errorMessage(e)}`, { cause, details: { reason: why } })
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
  const tx = createSqliteTransactions(db, opts.path)
  return {
    db,
    path: opts.path,
    version,
    quarantinedTo,
    quarantineReason,
    walCheck,
    walCopy,
    beforeClose: (fn) => void hooks.push(fn),
    onRollback: tx.onRollback,
    beforeCommit: tx.beforeCommit,
    transaction: tx.transaction,
    deviceTransaction: tx.deviceTransaction,
    get inTransaction() {
      return tx.inTransaction
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
