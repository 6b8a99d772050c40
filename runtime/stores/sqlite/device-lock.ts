import { closeSync, lstatSync, openSync, readSync, renameSync } from 'node:fs'
import Database from 'better-sqlite3'
import { ErrorCode, OutpostError } from '../../errors.js'
import { isDamaged, toStoreError } from './store-error.js'

/** A held device lock; `release` is idempotent. */
export interface DeviceLock {
  /** The lock file, `<database>.lock`. */
  readonly path: string
  release(): void
}

/** The pid a lock file names (its SQLite header's user_version, bytes 60–63), if it can be read. */
function holderOf(lockPath: string): number | undefined {
  let fd: number | undefined
  try {
    fd = openSync(lockPath, 'r')
    const b = Buffer.alloc(4)
    if (readSync(fd, b, 0, 4, 60) !== 4) return undefined
    const pid = b.readUInt32BE(0)
    return pid > 0 ? pid : undefined
  } catch {
    return undefined
  } finally {
    if (fd !== undefined) closeSync(fd)
  }
}

function take(lockPath: string, file: string): DeviceLock {
  let db: Database.Database
  try {
    db = new Database(lockPath, { timeout: 0 })
  } catch (err) {
    throw toStoreError(err, lockPath, 'open')
  }
  try {
    // EXCLUSIVE locking mode keeps the write lock from the first write until the connection
    // closes; the OS drops it when the process dies (kill -9, power cut), so a lock is never stale.
    db.pragma('locking_mode = EXCLUSIVE')
    db.pragma('journal_mode = OFF')
    // The lock is the OS's, not the file's: the pid written below only names the holder in a
    // message, so it is not flushed to the disk (an fsync at every start, slow on an SD card).
    db.pragma('synchronous = OFF')
    db.exec('BEGIN EXCLUSIVE')
    db.pragma(`user_version = ${process.pid}`)
    db.exec('COMMIT')
  } catch (err) {
    db.close()
    const code = (err as { code?: string }).code ?? ''
    if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
      const pid = holderOf(lockPath)
      throw new OutpostError(
        ErrorCode.STORE_IN_USE,
        `database ${file} is in use by another process${pid === undefined ? '' : ` (pid ${pid})`} running this device; stop it first, or give this one another device id or data folder`,
        { cause: err, details: { pid } },
      )
    }
    throw err
  }
  let held = true
  return {
    path: lockPath,
    release() {
      if (!held) return
      held = false
      db.close()
    },
  }
}

/**
 * Takes the lock that lets one process at a time run a device on the database `file`: an
 * exclusive SQLite lock on `<file>.lock`, held until `release` or the end of the process. The
 * file stays when released (removing it would let two processes lock two different files).
 * @throws STORE_IN_USE (another process holds it), STORE_READ_ONLY, STORE_FULL, STORE_FAILED
 */
export function lockDeviceDatabase(file: string, now: () => number = Date.now): DeviceLock {
  const lockPath = `${file}.lock`
  const setAside = (): void => {
    try {
      renameSync(lockPath, `${lockPath}.damaged-${now()}`)
    } catch (e) {
      throw toStoreError(e, lockPath, 'open')
    }
  }
  // Only a file of its own: a link (to the database itself, say) would have the holder's pid
  // written into what it points at, and a database so changed was refused at the next start
  // (its schema version the pid). Set aside as a damaged lock file is.
  let linked = false
  try {
    linked = lstatSync(lockPath, { throwIfNoEntry: false })?.isSymbolicLink() === true
  } catch {
    // A folder it may not look into: the open below says so, typed.
  }
  if (linked) setAside()
  try {
    return take(lockPath, file)
  } catch (err) {
    // A lock file cut short (a power cut while it was first written) holds no lock: set it
    // aside and make a new one.
    if (!isDamaged(err)) throw toStoreError(err, lockPath, 'open')
    setAside()
    try {
      return take(lockPath, file)
    } catch (e) {
      throw toStoreError(e, lockPath, 'open')
    }
  }
}
