import path from 'node:path'
import type { Logger } from 'pino'
import { ErrorCode, errorMessage, isOutpostError, OutpostError } from '../runtime/errors.js'
import { makeDirs } from '../runtime/make-dirs.js'
import { openDeviceDatabase, type DeviceDatabase } from '../runtime/stores/sqlite/index.js'
import { storeCodeOfOsError } from '../runtime/stores/sqlite/store-error.js'
import type { DeviceConfig } from './device-config.js'

/** Failures that may pass by themselves (another process lets go, space is freed, a disk is remounted): worth waiting for. */
const PASSING: ReadonlySet<string> = new Set<string>([ErrorCode.STORE_LOCKED, ErrorCode.STORE_IN_USE, ErrorCode.STORE_BUSY, ErrorCode.STORE_FULL, ErrorCode.STORE_READ_ONLY])

/** How a device opens its database: OUTPOST_STORE_WAIT_MS (default 0: do not wait). */
export interface DeviceStoreOptions {
  /** How long to keep trying while the database is locked, in use, full or read-only, ms (0: give up at once). */
  waitMs: number
  sleep?: (ms: number) => Promise<void>
}

/** Reads OUTPOST_STORE_WAIT_MS. @throws BAD_ARGUMENT when it is not a whole number of ms */
export function readStoreOptions(env: NodeJS.ProcessEnv = process.env): DeviceStoreOptions {
  const raw = env.OUTPOST_STORE_WAIT_MS
  const waitMs = raw === undefined || raw === '' ? 0 : Number(raw)
  if (!Number.isInteger(waitMs) || waitMs < 0) {
    throw new OutpostError(ErrorCode.BAD_ARGUMENT, `OUTPOST_STORE_WAIT_MS must be a whole number of milliseconds (0 or more), not "${raw}"`)
  }
  return { waitMs }
}

/**
 * Makes the data folder and its missing parents (one at a time: the first that cannot be made
 * says why). @throws STORE_READ_ONLY, STORE_FULL or STORE_FAILED, naming OUTPOST_DATA_DIR
 */
function makeDataFolder(dir: string): void {
  try {
    makeDirs(dir)
  } catch (err) {
    const code = (err as { code?: string }).code ?? ''
    // ENOENT for a folder whose parent is there: a file system that makes none (/proc).
    const store = code === 'ENOENT' ? ErrorCode.STORE_READ_ONLY : (storeCodeOfOsError(code) ?? ErrorCode.STORE_FAILED)
    const what = store === ErrorCode.STORE_READ_ONLY ? 'a read-only disk or folder' : store === ErrorCode.STORE_FULL ? 'the disk is full' : errorMessage(err)
    throw new OutpostError(store, `cannot make the data folder ${dir} (OUTPOST_DATA_DIR): ${what} (${code})`, { cause: err })
  }
}

/**
 * Opens the device's database, `<dataDir>/<deviceId>.db`, taking its device lock. While it is
 * locked, in use by another process, full or read-only it tries again, backing off, for up to
 * `waitMs`; then (or at once for any other failure) it throws the typed error. What it found
 * at open (a damaged file moved aside, transactions a damaged log left out) is logged.
 * @throws STORE_* (see openDeviceDatabase), STORE_READ_ONLY or STORE_FAILED when the data folder cannot be made
 */
export async function openDeviceStore(cfg: DeviceConfig, log: Logger, opts: DeviceStoreOptions): Promise<DeviceDatabase> {
  const file = path.join(cfg.dataDir, `${cfg.deviceId}.db`)
  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)))
  const until = Date.now() + opts.waitMs
  let delay = 250
  const told = new Set<string>()
  for (;;) {
    try {
      makeDataFolder(cfg.dataDir)
      const database = openDeviceDatabase({ path: file })
      report(database, log)
      return database
    } catch (err) {
      const left = until - Date.now()
      if (!isOutpostError(err) || !PASSING.has(err.code) || left <= 0) throw err
      if (!told.has(err.code)) {
        told.add(err.code)
        log.warn({ code: err.code, waitMs: opts.waitMs }, `${err.message}; trying again for up to ${Math.round(opts.waitMs / 1000)} s`)
      }
      await sleep(Math.min(delay, left))
      delay = Math.min(delay * 2, 5_000)
    }
  }
}

/** Logs what opening the database found. */
function report(database: DeviceDatabase, log: Logger): void {
  // Storage errors while running name no file (they may reach a remote caller): the log says here which one it is.
  log.info({ file: database.path, version: database.version }, `device database ${database.path}`)
  if (database.quarantinedTo !== undefined) {
    log.error({ code: ErrorCode.STORE_CORRUPT, movedTo: database.quarantinedTo, reason: database.quarantineReason }, `device database was damaged (${database.quarantineReason}); moved aside to ${database.quarantinedTo}, starting with an empty one`)
  }
  const damage = database.walCheck?.damage
  if (damage !== undefined) {
    const lost = damage.lostCommits < 0 ? 'every transaction in it' : `${damage.lostCommits} committed transaction(s)`
    log.error(
      { code: ErrorCode.STORE_CORRUPT, wal: database.walCheck, copiedTo: database.walCopy },
      `the database's write-ahead log is damaged at byte ${damage.offset}: SQLite leaves out ${lost} after it; the log was copied to ${database.walCopy ?? '(no copy: the disk refused it)'}`,
    )
  }
}
