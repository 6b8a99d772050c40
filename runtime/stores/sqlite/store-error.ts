import { accessSync, constants, existsSync, statfsSync } from 'node:fs'
import path from 'node:path'
import { ErrorCode, isOutpostError, OutpostError } from '../../errors.js'

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

/** True when the disk holding `file` has (almost) no space left; false when that cannot be told. */
export function diskIsFull(file: string): boolean {
  try {
    const s = statfsSync(path.dirname(path.resolve(file)))
    return s.bavail * s.bsize < NEARLY_FULL_BYTES
  } catch {
    return false
  }
}

/** True when this process may not write the file or its folder (for -wal and -shm): a read-only file system, or no permission. */
export function cannotWrite(file: string): boolean {
  try {
    accessSync(path.dirname(path.resolve(file)), constants.W_OK)
    if (existsSync(file)) accessSync(file, constants.W_OK)
    return false
  } catch (err) {
    const code = codeOf(err)
    return code === 'EROFS' || code === 'EACCES' || code === 'EPERM'
  }
}

/**
 * Turns an error of the device database (a SQLite or file system error) into an OutpostError
 * with a storage code; while running, anything else (an OutpostError, an error of the caller's
 * own code) is returned as it is, and at open it is STORE_FAILED. `file` is the database, for the message and for telling a full or read-only
 * disk from other I/O errors.
 */
export function toStoreError(err: unknown, file: string, phase: StorePhase): unknown {
  if (isOutpostError(err)) return err
  const code = codeOf(err)
  const sqlite = code.startsWith('SQLITE_')
  if (!sqlite && !/^E[A-Z]+$/.test(code)) {
    // At open everything that fails is about the file (better-sqlite3 throws a TypeError for a
    // folder that does not exist); while running, an error that is not SQLite's is not ours to name.
    return phase === 'open' ? new OutpostError(ErrorCode.STORE_FAILED, `cannot open database ${file}: ${(err as Error)?.message ?? String(err)}`, { cause: err, details: { file } }) : err
  }
  const why = `${(err as Error).message} (${code})`
  const opts = { cause: err, details: { file, cause: code } }
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
    return phase === 'open'
      ? new OutpostError(ErrorCode.STORE_LOCKED, `database ${file} is locked by another process: ${why}`, { ...opts, retryable: true })
      : new OutpostError(ErrorCode.STORE_BUSY, `database ${file} is busy (another process is writing): ${why}`, { ...opts, retryable: true })
  }
  if (code === 'SQLITE_FULL' || code === 'ENOSPC' || ((code.startsWith('SQLITE_IOERR') || code.startsWith('SQLITE_CANTOPEN')) && diskIsFull(file))) {
    return new OutpostError(ErrorCode.STORE_FULL, `disk holding database ${file} is full: ${why}`, { ...opts, retryable: true })
  }
  if (code.startsWith('SQLITE_READONLY') || code === 'EROFS' || code === 'EACCES' || code === 'EPERM' || ((code.startsWith('SQLITE_CANTOPEN') || code.startsWith('SQLITE_IOERR')) && cannotWrite(file))) {
    return new OutpostError(ErrorCode.STORE_READ_ONLY, `database ${file} or its folder cannot be written: ${why}`, opts)
  }
  if (isDamaged(err)) {
    return new OutpostError(ErrorCode.STORE_CORRUPT, `database ${file} is damaged: ${why}`, opts)
  }
  return new OutpostError(ErrorCode.STORE_FAILED, `database ${file} failed: ${why}`, opts)
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
