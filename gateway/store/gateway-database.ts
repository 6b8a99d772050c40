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
]

/** Opens `<dataDir>/gateway.db`: 'device' access for the gateway process (locked), 'tool' for the CLI beside it. */
export function openGatewayDatabase(path: string, access: 'device' | 'tool' | 'read' = 'device'): DeviceDatabase {
  return openDeviceDatabase({ path, access, migrations: GATEWAY_MIGRATIONS, synchronous: 'FULL', onCorrupt: 'fail' })
}
