import type Database from 'better-sqlite3'

/** One step of the device database schema; `version` is stored in PRAGMA user_version. */
export interface Migration {
  version: number
  description: string
  up(db: Database.Database): void
}

/** The device database schema, oldest first. Append only: never edit a released step. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'key-value state per service',
    up(db) {
      db.exec(`
        CREATE TABLE kv (
          scope      TEXT    NOT NULL,
          key        TEXT    NOT NULL,
          value      BLOB    NOT NULL,
          updated_at INTEGER NOT NULL,
          PRIMARY KEY (scope, key)
        ) WITHOUT ROWID;
      `)
    },
  },
  {
    version: 2,
    description: 'outbox: everything the device publishes, until the broker acknowledged it',
    up(db) {
      db.exec(`
        CREATE TABLE outbox (
          seq        INTEGER PRIMARY KEY AUTOINCREMENT,
          stream     TEXT    NOT NULL,
          topic      TEXT    NOT NULL,
          frame      BLOB    NOT NULL,
          retain     INTEGER NOT NULL,
          bytes      INTEGER NOT NULL,
          created_at INTEGER NOT NULL
        );
        CREATE INDEX outbox_stream ON outbox (stream, seq);
      `)
    },
  },
  {
    version: 3,
    description: 'inbox: recent command ids, who ran them, and the reply sent',
    up(db) {
      db.exec(`
        CREATE TABLE inbox (
          id       TEXT    NOT NULL UNIQUE,
          instance TEXT    NOT NULL,
          reply    BLOB,
          at       INTEGER NOT NULL
        );
      `)
    },
  },
]
