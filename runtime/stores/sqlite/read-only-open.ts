import { closeSync, copyFileSync, existsSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import Database from 'better-sqlite3'

/** A read-only connection to a database, and what to do once it is closed. */
export interface ReadOnlyConnection {
  readonly db: Database.Database
  /** How it was opened: in memory, in place, or from a private copy in the temporary folder. */
  readonly how: 'memory' | 'in-place' | 'copy'
  /** Closes the connection and removes the copy, if one was made; idempotent. */
  close(): void
}

/** Largest file read into memory rather than opened where it is or copied. */
const READ_COPY_MAX_BYTES = 64 * 1024 * 1024

const sizeOf = (file: string): number => {
  try {
    return statSync(file).size
  } catch {
    return -1
  }
}

/** The first 100 bytes of a file (SQLite's database header), or fewer when it is shorter. */
export function headerOf(file: string): Buffer {
  const fd = openSync(file, 'r')
  try {
    const b = Buffer.alloc(100)
    return b.subarray(0, readSync(fd, b, 0, 100, 0))
  } finally {
    closeSync(fd)
  }
}

/** True when the bytes start with SQLite's magic string. */
export const isSqliteHeader = (header: Buffer): boolean => header.length >= 100 && header.subarray(0, 16).toString('latin1') === 'SQLite format 3\0'

/**
 * Opens `file` read-only without creating or changing anything beside it. SQLite, opening a
 * WAL database read-only, creates its -shm (and -wal) when they are not there, and cannot open
 * it at all in a folder it may not write; better-sqlite3 is built without URI file names, so
 * `immutable=1` is not available. So:
 * - a WAL database with its log and -shm (a device runs on it, or they were copied together):
 *   opened in place, which creates nothing new;
 * - a database with no log to replay, up to 64 MiB: read into memory (a WAL database is marked
 *   there as a rollback-journal one), which also takes no lock: a file another process holds
 *   locked (a running device's `.lock` file) can be looked at;
 * - a larger database not in WAL mode (header bytes 18 and 19 are 1), with no log: opened in
 *   place (SQLite creates nothing for it);
 * - anything else (a log without -shm: a copy, or a device that stopped uncleanly; a larger
 *   file; a folder SQLite cannot open it in): the database and its log are copied to a private
 *   folder in the temporary folder, opened there, and removed at close. The copy takes the
 *   database's size in the temporary folder (TMPDIR).
 * For another process than the one that has the database open: reading the file with Node's
 * own calls, as this does, drops the POSIX locks SQLite holds on it in the same process.
 */
export function openReadOnly(file: string, busyMs: number): ReadOnlyConnection {
  const header = headerOf(file)
  const wal = sizeOf(`${file}-wal`) > 0
  const walMode = header.length >= 20 && (header[18] === 2 || header[19] === 2)
  const inPlace = (): ReadOnlyConnection => {
    const db = new Database(file, { readonly: true, fileMustExist: true, timeout: busyMs })
    return { db, how: 'in-place', close: () => db.open && db.close() }
  }
  // A device runs on it (or its three files were copied together): in place, SQLite makes
  // nothing new, and sees what the device commits (a copy could catch a checkpoint half done).
  if (walMode && existsSync(`${file}-wal`) && existsSync(`${file}-shm`)) {
    let c: ReadOnlyConnection | undefined
    try {
      c = inPlace()
      // Reading the schema makes SQLite read the log's index: a folder it may not write fails here.
      c.db.pragma('schema_version', { simple: true })
      return c
    } catch (err) {
      c?.close()
      const code = (err as { code?: string }).code ?? ''
      if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_NOTADB') || code.startsWith('SQLITE_CORRUPT')) throw err
    }
  }
  if (!wal && sizeOf(file) <= READ_COPY_MAX_BYTES) {
    const bytes = readFileSync(file)
    if (walMode) {
      bytes[18] = 1
      bytes[19] = 1
    }
    const db = new Database(bytes, { readonly: true })
    return { db, how: 'memory', close: () => db.open && db.close() }
  }
  if (!walMode && !wal) return inPlace()
  const dir = mkdtempSync(path.join(tmpdir(), 'outpost-read-'))
  try {
    const copy = path.join(dir, 'db')
    copyFileSync(file, copy)
    if (wal) copyFileSync(`${file}-wal`, `${copy}-wal`)
    const db = new Database(copy, { readonly: true, fileMustExist: true, timeout: busyMs })
    return {
      db,
      how: 'copy',
      close: () => {
        if (db.open) db.close()
        rmSync(dir, { recursive: true, force: true })
      },
    }
  } catch (err) {
    rmSync(dir, { recursive: true, force: true })
    throw err
  }
}
