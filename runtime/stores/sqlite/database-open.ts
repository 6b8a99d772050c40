import { renameSync, existsSync, statSync } from 'node:fs'
import Database from 'better-sqlite3'
import { ErrorCode, OutpostError } from '../../errors.js'
import type { DatabaseAccess, Synchronous } from './device-database.js'
import type { Migration } from './migrations.js'
import { cannotWrite, toStoreError } from './store-error.js'
import { headerOf, isSqliteHeader, openReadOnly } from './read-only-open.js'

// Opening the device database: the checks and steps before `openDeviceDatabase` hands it out.

/** A time as it goes into file names (no colons or dots). */
export const stamp = (now: number): string => new Date(now).toISOString().replace(/[:.]/g, '-')

/** Moves a damaged file and its -wal and -shm aside to `<path>.corrupt-<time>`. @returns where it went */
export function quarantine(path: string, now: number): string {
  const target = `${path}.corrupt-${stamp(now)}`
  for (const suffix of ['', '-wal', '-shm']) {
    if (existsSync(path + suffix)) renameSync(path + suffix, target + suffix)
  }
  return target
}

/** Damage SQLite reported, as an error of its own kind (it alone may lead to a quarantine). */
export class Damaged extends Error {
  static override readonly name: string = 'Damaged'
  override name = 'Damaged'
}

/** How a database is opened (the options, with their defaults applied). */
export interface OpenSettings {
  access: DatabaseAccess
  synchronous: Synchronous
  cacheKiB: number
  busyMs: number
  check: 'quick' | 'full'
}

/** An open connection and how to close it (a read-only one may have a private copy to remove). */
export interface Opened {
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
  if (current <= 0) throw notDevice(path, 'no Outpost schema in it')
  const have = new Set(db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table'`).pluck().all() as string[])
  const missing = tablesOf(migrations, Math.min(current, latest)).filter((t) => !have.has(t))
  if (missing.length > 0) throw notDevice(path, `no Outpost tables in it: ${missing.join(', ')} missing`)
  if (current !== latest) throw otherSchema(path, current, latest)
}

/** STORE_FAILED for a file that is not a device database (details.notDevice), nothing changed. */
function notDevice(path: string, reason: string, more?: object): OutpostError {
  return new OutpostError(ErrorCode.STORE_FAILED, `${path} is not a device database (${reason}); nothing was changed`, { details: { ...more, notDevice: true, reason } })
}

/** STORE_FAILED for a database of another schema version than this runtime's: newer (left as it is) or older (a device's start updates it). */
function otherSchema(path: string, current: number, latest: number): OutpostError {
  const newer = current > latest
  return new OutpostError(ErrorCode.STORE_FAILED, `database ${path} has schema version ${current}, ${newer ? 'newer' : 'older'} than this runtime's ${latest}; ${newer ? 'it was left as it is (update the runtime)' : 'start the device once to update it (nothing was changed)'}`, { details: { current, latest } })
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
    refuseReadOnly(path)
    db.pragma(`synchronous = ${o.synchronous}`)
    db.pragma('foreign_keys = ON')
    return { db, close: () => db.close() }
  } catch (err) {
    db.close()
    throw err
  }
}

/** @throws STORE_READ_ONLY when the file or its folder cannot be written (SQLite would open it read-only without a word, and fail only at the first write) */
function refuseReadOnly(path: string): void {
  if (cannotWrite(path)) throw new OutpostError(ErrorCode.STORE_READ_ONLY, `database ${path} or its folder cannot be written (read-only file, folder or file system)`)
}

/**
 * Opens a file for its access: for 'device' (or ':memory:') read-write, in WAL mode, with an
 * integrity check; for 'tool' and 'read' through openBeside. @throws Damaged, or what SQLite throws
 */
export function openChecked(path: string, o: OpenSettings, migrations: readonly Migration[]): Opened {
  if (o.access !== 'device' && path !== ':memory:') return openBeside(path, o, migrations)
  const db = new Database(path, { fileMustExist: o.access !== 'device', timeout: o.busyMs })
  try {
    db.pragma(`cache_size = -${Math.max(64, Math.floor(o.cacheKiB))}`)
    // SQLite opens a file it may not write read-only without a word, and fails only at the
    // first write: say so now.
    if (path !== ':memory:') refuseReadOnly(path)
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

/** Runs the schema steps a device's open needs; checks the version for other access. @returns the schema version */
export function migrate(db: Database.Database, migrations: readonly Migration[], path: string, access: DatabaseAccess): number {
  const current = db.pragma('user_version', { simple: true }) as number
  const latest = migrations.at(-1)?.version ?? 0
  if (current > latest) throw otherSchema(path, current, latest)
  if (access !== 'device') {
    if (current === 0) throw notDevice(path, 'no Outpost schema in it', { current, latest })
    if (current < latest) throw otherSchema(path, current, latest)
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
export const sizeOf = (path: string): number => {
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
export function checkIsDatabaseFile(path: string): void {
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
