import { readdirSync } from 'node:fs'
import path from 'node:path'
import { ErrorCode, isOutpostError, OutpostError } from '../../runtime/errors.js'
import { openDeviceDatabase, type DeviceDatabase, type Migration } from '../../runtime/stores/sqlite/index.js'

// The gateway's own SQLite database, `<dataDir>/gateway.db`: the devices allowed on its broker
// (gateway/devices) and the fleet registry (gateway/registry). It is opened with the same
// checks as a device database (WAL, damaged files moved aside, a lock for the one process that
// runs the gateway); the `outpost devices` commands open it as a tool, beside a running gateway.

/** The gateway database schema, oldest first. Append only: never edit a released step. */
export const GATEWAY_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'devices allowed on the broker; the fleet registry',
    up(db) {
      db.exec(`
        CREATE TABLE devices (
          id          TEXT    PRIMARY KEY,
          role        TEXT    NOT NULL,
          salt        BLOB    NOT NULL,
          hash        BLOB    NOT NULL,
          created_at  INTEGER NOT NULL,
          rotated_at  INTEGER,
          revoked_at  INTEGER
        ) WITHOUT ROWID;
        CREATE TABLE registry (
          device      TEXT    PRIMARY KEY,
          online      INTEGER NOT NULL,
          instance    TEXT,
          runtime     TEXT,
          first_seen  INTEGER NOT NULL,
          last_seen   INTEGER NOT NULL,
          changed_at  INTEGER NOT NULL,
          services    TEXT    NOT NULL
        ) WITHOUT ROWID;
      `)
    },
  },
  {
    version: 2,
    description: 'the contract document each device of the registry announced last',
    up(db) {
      // Gateways of schema version 1 made this table themselves when they started (CREATE TABLE
      // IF NOT EXISTS in gateway/registry/contracts.ts): a database of theirs may have it already,
      // as this step makes it.
      db.exec(`
        CREATE TABLE IF NOT EXISTS registry_contracts (
          device      TEXT    PRIMARY KEY,
          instance    TEXT    NOT NULL,
          received_at INTEGER NOT NULL,
          bytes       INTEGER NOT NULL,
          document    TEXT    NOT NULL
        ) WITHOUT ROWID;
      `)
    },
  },
]

const olderSchema = (err: unknown): err is OutpostError => {
  if (!isOutpostError(err, ErrorCode.STORE_FAILED)) return false
  const d = err.details as { current?: unknown; latest?: unknown } | undefined
  return typeof d?.current === 'number' && typeof d.latest === 'number' && d.current >= 1 && d.current < d.latest
}

/**
 * Opens `<dataDir>/gateway.db`: 'device' access for the gateway process (locked, migrated),
 * 'tool' for the CLI beside it, 'read' to look only. A 'tool' open of a database of an older
 * schema (no gateway of this version has started on it yet) updates it first when no gateway
 * holds it, as that gateway would; while an older gateway runs on it, nothing is changed.
 */
export function openGatewayDatabase(path: string, access: 'device' | 'tool' | 'read' = 'device'): DeviceDatabase {
  // The gateway's own connection waits briefly for a lock, as forward.db's does: better-sqlite3
  // waits synchronously, and another process holding gateway.db's write lock (a sqlite3 shell, a
  // backup) froze the broker and HTTP for 5 s at each registry write. A write that gives up is
  // tried again later (the registry says so). Tools keep the default wait.
  const open = (a: 'device' | 'tool' | 'read'): DeviceDatabase =>
    openDeviceDatabase({ path, access: a, migrations: GATEWAY_MIGRATIONS, synchronous: 'FULL', onCorrupt: 'fail', ...(a === 'device' ? { busyTimeoutMs: 200 } : {}) })
  try {
    return open(access)
  } catch (err) {
    // The device lock's words are a device's ("give this one another device id"): a gateway's.
    if (access === 'device' && isOutpostError(err, ErrorCode.STORE_IN_USE)) {
      const pid = (err.details as { pid?: number } | undefined)?.pid
      throw new OutpostError(ErrorCode.STORE_IN_USE, `gateway database ${path} is in use by another gateway${pid === undefined ? '' : ` (pid ${pid})`} on this data folder; stop it first, or give this one another dataDir`, { cause: err, details: err.details })
    }
    if (access !== 'tool' || !olderSchema(err)) throw err
    try {
      open('device').close()
    } catch (e) {
      if (isOutpostError(e, ErrorCode.STORE_IN_USE)) {
        throw new OutpostError(ErrorCode.STORE_FAILED, `gateway database ${path} has an older schema, and the gateway that runs on it is of an older version; restart it with this version to update the database (nothing was changed)`, { cause: err, details: err.details })
      }
      throw e
    }
    return open('tool')
  }
}

/**
 * The damaged gateway databases set aside in `dataDir` (`gateway.db.corrupt-<time>`, by an earlier
 * start that stopped on them), oldest first; none when the folder cannot be read.
 */
export function setAsideGatewayDatabases(dataDir: string): string[] {
  try {
    return readdirSync(dataDir).filter((f) => f.startsWith('gateway.db.corrupt-') && !/-(wal|shm)$/.test(f)).sort().map((f) => path.join(dataDir, f))
  } catch {
    return []
  }
}

