import Database from 'better-sqlite3'

/**
 * A database at `file` in WAL mode that never checkpoints by itself, with a table `t (n, pad)`:
 * whatever it commits stays in its write-ahead log, as with a writer that dies before a checkpoint.
 */
export function openLogWriter(file: string): { db: Database.Database; insert: Database.Statement<[number, Buffer]> } {
  const db = new Database(file)
  db.pragma('journal_mode = WAL')
  db.pragma('wal_autocheckpoint = 0')
  db.exec('CREATE TABLE t (n INTEGER, pad BLOB)')
  return { db, insert: db.prepare<[number, Buffer]>('INSERT INTO t VALUES (?, ?)') }
}
