import type Database from 'better-sqlite3'

/** One step of the device database schema; `version` is stored in PRAGMA user_version. */
export interface Migration {
  version: number
  /** What the step does, for the reader (device steps say it in a comment instead: bundles carry no text no one reads). */
  description?: string
  up(db: Database.Database): void
}

/** The device database schema, oldest first. Append only: never edit a released step. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    // key-value state per service
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
    // outbox: everything the device publishes, until the broker acknowledged it
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
    // inbox: recent command ids, who ran them, and the reply sent
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
  {
    version: 4,
    // jobs of the durable queues
    up(db) {
      db.exec(`
        CREATE TABLE jobs (
          id          TEXT    PRIMARY KEY,
          queue       TEXT    NOT NULL,
          state       TEXT    NOT NULL,
          payload     BLOB    NOT NULL,
          priority    INTEGER NOT NULL,
          run_at      INTEGER NOT NULL,
          attempt     INTEGER NOT NULL,
          lease_until INTEGER,
          idem_key    TEXT,
          created_at  INTEGER NOT NULL,
          updated_at  INTEGER NOT NULL,
          output      BLOB,
          error       TEXT,
          progress    BLOB,
          UNIQUE (queue, idem_key)
        );
        CREATE INDEX jobs_ready ON jobs (queue, state, priority DESC, run_at, created_at);
        CREATE INDEX jobs_leased ON jobs (queue, state, lease_until);
      `)
    },
  },
  {
    version: 5,
    // jobs: correlation and trace ids, failure codes, dead reasons; paused queues
    up(db) {
      db.exec(`
        ALTER TABLE jobs ADD COLUMN corr TEXT;
        ALTER TABLE jobs ADD COLUMN traceparent TEXT;
        ALTER TABLE jobs ADD COLUMN error_code TEXT;
        ALTER TABLE jobs ADD COLUMN dead_reason TEXT;
        CREATE TABLE queues (
          queue  TEXT    PRIMARY KEY,
          paused INTEGER NOT NULL
        ) WITHOUT ROWID;
      `)
    },
  },
  {
    version: 6,
    // jobs keyed by id alone (WITHOUT ROWID), indexes only over jobs that can still run
    up(db) {
      // Each state change used to move entries in two full indexes; completed and dead jobs now
      // sit in none of the hot ones, so a settlement writes fewer pages.
      db.exec(`
        CREATE TABLE jobs_v6 (
          id          TEXT    PRIMARY KEY,
          queue       TEXT    NOT NULL,
          state       TEXT    NOT NULL,
          payload     BLOB    NOT NULL,
          priority    INTEGER NOT NULL,
          run_at      INTEGER NOT NULL,
          attempt     INTEGER NOT NULL,
          lease_until INTEGER,
          idem_key    TEXT,
          created_at  INTEGER NOT NULL,
          updated_at  INTEGER NOT NULL,
          output      BLOB,
          error       TEXT,
          progress    BLOB,
          corr        TEXT,
          traceparent TEXT,
          error_code  TEXT,
          dead_reason TEXT
        ) WITHOUT ROWID;
        INSERT INTO jobs_v6 (id, queue, state, payload, priority, run_at, attempt, lease_until, idem_key, created_at, updated_at, output, error, progress, corr, traceparent, error_code, dead_reason)
          SELECT id, queue, state, payload, priority, run_at, attempt, lease_until, idem_key, created_at, updated_at, output, error, progress, corr, traceparent, error_code, dead_reason FROM jobs;
        DROP TABLE jobs;
        ALTER TABLE jobs_v6 RENAME TO jobs;
        CREATE UNIQUE INDEX jobs_key ON jobs (queue, idem_key) WHERE idem_key IS NOT NULL;
        CREATE INDEX jobs_ready ON jobs (queue, priority DESC, run_at, created_at) WHERE state = 'ready';
        CREATE INDEX jobs_leased ON jobs (queue, lease_until) WHERE state = 'leased';
        CREATE INDEX jobs_completed ON jobs (queue, updated_at) WHERE state = 'completed';
        CREATE INDEX jobs_dead ON jobs (queue, updated_at) WHERE state = 'dead';
      `)
    },
  },
  {
    version: 7,
    // outbox without its index by stream
    up(db) {
      // The index served only dropping a full stream's oldest entries, and every append and
      // delivery paid for it: an insert and a delete in a second B-tree, 8 % of a job's cost.
      // Dropping now scans the table from where the stream's last drop ended.
      db.exec('DROP INDEX IF EXISTS outbox_stream')
    },
  },
  {
    version: 8,
    // jobs: no index of completed jobs; each queue counts its completed jobs
    up(db) {
      // Completing a job inserted an entry into that index, which only pruning and the
      // completed count in metrics read. Pruning now walks the primary key (job ids begin with
      // their creation time), and the count is kept with the queue, changed in the same commits
      // as the jobs it counts.
      db.exec(`
        DROP INDEX IF EXISTS jobs_completed;
        ALTER TABLE queues ADD COLUMN completed INTEGER NOT NULL DEFAULT 0;
        INSERT INTO queues (queue, paused, completed)
          SELECT queue, 0, COUNT(*) FROM jobs WHERE state = 'completed' GROUP BY queue
          ON CONFLICT (queue) DO UPDATE SET completed = excluded.completed;
      `)
    },
  },
  {
    version: 9,
    // jobs keyed by a row number that their ids carry
    up(db) {
      // Leasing and settling a job finds it by its row number: an integer key is compared faster
      // than a 26-character one, and the partial indexes hold it in place of the id. A job id
      // made since carries its row number (its last 8 characters), so ids need no index of their
      // own. Jobs from before keep their ids; job_ids finds their rows.
      db.exec(`
        CREATE TABLE jobs_v9 (
          n           INTEGER PRIMARY KEY,
          id          TEXT    NOT NULL,
          queue       TEXT    NOT NULL,
          state       TEXT    NOT NULL,
          payload     BLOB    NOT NULL,
          priority    INTEGER NOT NULL,
          run_at      INTEGER NOT NULL,
          attempt     INTEGER NOT NULL,
          lease_until INTEGER,
          idem_key    TEXT,
          created_at  INTEGER NOT NULL,
          updated_at  INTEGER NOT NULL,
          output      BLOB,
          error       TEXT,
          progress    BLOB,
          corr        TEXT,
          traceparent TEXT,
          error_code  TEXT,
          dead_reason TEXT
        );
        INSERT INTO jobs_v9 (id, queue, state, payload, priority, run_at, attempt, lease_until, idem_key, created_at, updated_at, output, error, progress, corr, traceparent, error_code, dead_reason)
          SELECT id, queue, state, payload, priority, run_at, attempt, lease_until, idem_key, created_at, updated_at, output, error, progress, corr, traceparent, error_code, dead_reason FROM jobs ORDER BY id;
        DROP TABLE jobs;
        ALTER TABLE jobs_v9 RENAME TO jobs;
        CREATE TABLE job_ids (id TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
        INSERT INTO job_ids (id, n) SELECT id, n FROM jobs;
        CREATE UNIQUE INDEX jobs_key ON jobs (queue, idem_key) WHERE idem_key IS NOT NULL;
        CREATE INDEX jobs_ready ON jobs (queue, priority DESC, run_at, created_at) WHERE state = 'ready';
        CREATE INDEX jobs_leased ON jobs (queue, lease_until) WHERE state = 'leased';
        CREATE INDEX jobs_dead ON jobs (queue, updated_at) WHERE state = 'dead';
      `)
    },
  },
  {
    version: 10,
    // inbox: the reply frame as it was sent, with its topic
    up(db) {
      // A repeated command used to cost a decode of the stored reply and an encode to send it
      // again; the frame that was sent now goes out again as it is. Rows from before keep their
      // encoded envelope and a NULL topic, and are routed and encoded again when repeated.
      db.exec('ALTER TABLE inbox ADD COLUMN topic TEXT')
    },
  },
]
