import { accessSync, closeSync, constants, existsSync, openSync, statfsSync, unlinkSync } from 'node:fs'
import path from 'node:path'
import { ErrorCode, errorMessage, isOutpostError, OutpostError } from '../../errors.js'

/** When an error happened: while opening the database (a lock is STORE_LOCKED) or while it runs (STORE_BUSY). */
export type StorePhase = 'open' | 'run'

/** Free bytes below which an I/O error on the database's disk is taken for a full disk. */
const NEARLY_FULL_BYTES = 64 * 1024

const codeOf = (err: unknown): string => {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' ? code : ''
}

/** True when SQLite reports the file as damaged or not a database at all. */
export function isDamaged(err: unknown): boolean {
  const code = codeOf(err)
  return code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB'
}

/**
 * True when the disk holding `file` has (almost) no space left; false when that cannot be told,
 * and for a file system that has no blocks at all (/proc, /sys: they report none free, and are
 * not full but take no files).
 */
export function diskIsFull(file: string): boolean {
  try {
    const s = statfsSync(path.dirname(path.resolve(file)))
    return s.blocks > 0 && s.bavail * s.bsize < NEARLY_FULL_BYTES
  } catch {
    return false
  }
}

/** The storage code an operating system error code stands for: read-only, full, or undefined for anything else. */
export function storeCodeOfOsError(code: string): ErrorCode | undefined {
  if (code === 'EROFS' || code === 'EACCES' || code === 'EPERM') return ErrorCode.STORE_READ_ONLY
  if (code === 'ENOSPC' || code === 'EDQUOT') return ErrorCode.STORE_FULL
  return undefined
}

/** True when this process may not write the file or its folder (for -wal and -shm): a read-only file system, or no permission. */
export function cannotWrite(file: string): boolean {
  try {
    accessSync(path.dirname(path.resolve(file)), constants.W_OK)
    if (existsSync(file)) accessSync(file, constants.W_OK)
    return false
  } catch (err) {
    return storeCodeOfOsError(codeOf(err)) === ErrorCode.STORE_READ_ONLY
  }
}

/**
 * Why the file system will not let this process open `file` for writing, as the OS says it
 * (SQLite's "unable to open database file" does not say): the error code of checking its folder
 * and the file; at open also of opening the file (creating it, and removing it again, when it is
 * not there). The database itself is never opened while running: closing a descriptor of a file
 * would drop the locks SQLite holds on it in this process. Instead a new, empty file is created
 * beside it and removed: ext4 turned read-only by an error (errors=remount-ro, emergency_ro) still
 * passes the access checks, and says EROFS only to an actual write. Undefined when nothing fails.
 * Only asked once something has failed.
 */
export function osCauseOf(file: string, phase: StorePhase): string | undefined {
  try {
    const folder = path.dirname(path.resolve(file))
    accessSync(folder, constants.W_OK)
    const exists = existsSync(file)
    if (exists) accessSync(file, constants.W_OK)
    if (phase === 'run') {
      const probe = path.join(folder, `.${path.basename(file)}.probe-${process.pid}`)
      closeSync(openSync(probe, 'w'))
      unlinkSync(probe)
      return undefined
    }
    if (exists) closeSync(openSync(file, 'r+'))
    else {
      closeSync(openSync(file, 'wx'))
      unlinkSync(file)
    }
    return undefined
  } catch (err) {
    return codeOf(err) || undefined
  }
}

/** The message of a storage error: at open (in this process's own log) it names the file; while running (it may reach a remote caller) it does not. */
const where = (file: string, phase: StorePhase): string => (phase === 'open' ? `database ${file}` : 'device database')

/**
 * Turns an error of the device database (a SQLite or file system error) into an OutpostError
 * with a storage code; while running, anything else (an OutpostError, an error of the caller's
 * own code) is returned as it is, and at open it is STORE_FAILED. `file` is the database, for
 * telling a full or read-only disk from other I/O errors. Errors while running may be sent to a
 * remote caller (a command's reply): their message and details never name the file; errors at
 * open end up in this process's log and do.
 */
export function toStoreError(err: unknown, file: string, phase: StorePhase): unknown {
  if (isOutpostError(err)) return err
  const code = codeOf(err)
  const sqlite = code.startsWith('SQLITE_')
  if (!sqlite && !/^E[A-Z]+$/.test(code)) {
    // At open everything that fails is about the file (better-sqlite3 throws a TypeError for a
    // folder that does not exist); while running, an error that is not SQLite's is not ours to name.
    return phase === 'open' ? new OutpostError(ErrorCode.STORE_FAILED, `cannot open database ${file}: ${errorMessage(err)}`, { cause: err }) : err
  }
  // SQLite's messages name no file; a Node file system error's does, so only its code is kept while running.
  const why = sqlite || phase === 'open' ? `${errorMessage(err)} (${code})` : code
  const at = where(file, phase)
  // SQLite says "unable to open" or "disk I/O error" without why: ask the file system.
  const os = code.startsWith('SQLITE_CANTOPEN') || code.startsWith('SQLITE_IOERR') ? osCauseOf(file, phase) : undefined
  const opts = { cause: err, details: os === undefined ? { cause: code } : { cause: code, os } }
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
    return phase === 'open'
      ? new OutpostError(ErrorCode.STORE_LOCKED, `${at} is locked by another process: ${why}`, { ...opts, retryable: true })
      : new OutpostError(ErrorCode.STORE_BUSY, `${at} is busy (another process is writing): ${why}`, { ...opts, retryable: true })
  }
  const byOs = storeCodeOfOsError(os ?? code)
  if (code.startsWith('SQLITE_READONLY') || byOs === ErrorCode.STORE_READ_ONLY) {
    return new OutpostError(ErrorCode.STORE_READ_ONLY, `${at} or its folder cannot be written: ${why}${os === undefined ? '' : ` (${os})`}`, opts)
  }
  // A write that finds no room is SQLITE_FULL; an open or a -shm that cannot grow on a full disk
  // is an I/O error, told apart by the disk having no space left.
  if (code === 'SQLITE_FULL' || byOs === ErrorCode.STORE_FULL || (os === undefined && (code.startsWith('SQLITE_IOERR') || code.startsWith('SQLITE_CANTOPEN')) && diskIsFull(file))) {
    return new OutpostError(ErrorCode.STORE_FULL, phase === 'open' ? `disk holding ${at} is full: ${why}` : `device storage is full: ${why}`, { ...opts, retryable: true })
  }
  if (isDamaged(err)) {
    return new OutpostError(ErrorCode.STORE_CORRUPT, `${at} is damaged: ${why}`, opts)
  }
  return new OutpostError(ErrorCode.STORE_FAILED, `${at} failed: ${why}${os === undefined ? '' : ` (${os})`}`, opts)
}

/** `fn`, with SQLite's errors turned into storage errors (see toStoreError); for statements run outside a transaction. */
export function guardStore<A extends unknown[], R>(file: string, fn: (...args: A) => R): (...args: A) => R {
  return (...args) => {
    try {
      return fn(...args)
    } catch (err) {
      throw toStoreError(err, file, 'run')
    }
  }
}

/**
 * Builds a store on `database`, its statements prepared. A table or column the file lacks (it was
 * changed by something other than the runtime: a tool, a hand) is STORE_FAILED saying so, not
 * SQLite's bare error with its stack; any other failure as toStoreError names it. The file is
 * left where it is: it is not damaged, and what it still holds may be wanted.
 */
export function storeOn<T>(database: { path: string }, build: () => T): T {
  try {
    return build()
  } catch (err) {
    const msg = errorMessage(err)
    if (/^no such (table|column)/.test(msg)) {
      throw new OutpostError(ErrorCode.STORE_FAILED, `database ${database.path} is not as this runtime leaves its databases (${msg}): something else changed it; restore it from a backup, or move it away to start with an empty one (nothing was moved)`, { cause: err })
    }
    throw toStoreError(err, database.path, 'open')
  }
}

