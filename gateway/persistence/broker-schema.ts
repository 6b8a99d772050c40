import type Database from 'better-sqlite3'
import type { Statement } from 'better-sqlite3'
import type { Migration } from '../../runtime/stores/sqlite/index.js'

/** broker.db's schema, oldest first. Append only: never edit a released step. */
export const BROKER_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'broker state: subscriptions, retained messages, outgoing queues, incoming QoS 2, wills',
    up(db) {
      db.exec(`
        CREATE TABLE subscriptions (
          client_id TEXT NOT NULL,
          topic     TEXT NOT NULL,
          record    TEXT NOT NULL,
          PRIMARY KEY (client_id, topic)
        ) WITHOUT ROWID;
        CREATE TABLE retained (
          topic   TEXT PRIMARY KEY,
          meta    TEXT NOT NULL,
          payload BLOB NOT NULL
        ) WITHOUT ROWID;
        CREATE TABLE outgoing (
          seq       INTEGER PRIMARY KEY,
          client_id TEXT    NOT NULL,
          meta      TEXT    NOT NULL,
          payload   BLOB    NOT NULL
        );
        CREATE TABLE incoming (
          client_id  TEXT    NOT NULL,
          message_id INTEGER NOT NULL,
          meta       TEXT    NOT NULL,
          payload    BLOB    NOT NULL,
          PRIMARY KEY (client_id, message_id)
        ) WITHOUT ROWID;
        CREATE TABLE wills (
          client_id TEXT PRIMARY KEY,
          meta      TEXT NOT NULL,
          payload   BLOB NOT NULL
        ) WITHOUT ROWID;
      `)
    },
  },
]

type BrokerWrite = 'putSub' | 'delSub' | 'delSubs' | 'putRetained' | 'delRetained' | 'putOutgoing' | 'setOutgoingMeta' | 'delOutgoing' | 'putIncoming' | 'delIncoming' | 'delIncomingOf' | 'putWill' | 'delWill'

/** The statements that write broker.db, by name (typed: the declarations of the package must name them). */
export type BrokerStatements = Record<BrokerWrite, Statement>

/** The statements that write broker.db, prepared once. */
export function prepareBrokerStatements(db: Database.Database): BrokerStatements {
  return {
    putSub: db.prepare('INSERT OR REPLACE INTO subscriptions (client_id, topic, record) VALUES (?, ?, ?)'),
    delSub: db.prepare('DELETE FROM subscriptions WHERE client_id = ? AND topic = ?'),
    delSubs: db.prepare('DELETE FROM subscriptions WHERE client_id = ?'),
    putRetained: db.prepare('INSERT OR REPLACE INTO retained (topic, meta, payload) VALUES (?, ?, ?)'),
    delRetained: db.prepare('DELETE FROM retained WHERE topic = ?'),
    putOutgoing: db.prepare('INSERT OR REPLACE INTO outgoing (seq, client_id, meta, payload) VALUES (?, ?, ?, ?)'),
    setOutgoingMeta: db.prepare('UPDATE outgoing SET meta = ? WHERE seq = ?'),
    delOutgoing: db.prepare('DELETE FROM outgoing WHERE seq = ?'),
    putIncoming: db.prepare('INSERT OR REPLACE INTO incoming (client_id, message_id, meta, payload) VALUES (?, ?, ?, ?)'),
    delIncoming: db.prepare('DELETE FROM incoming WHERE client_id = ? AND message_id = ?'),
    delIncomingOf: db.prepare('DELETE FROM incoming WHERE client_id = ?'),
    putWill: db.prepare('INSERT OR REPLACE INTO wills (client_id, meta, payload) VALUES (?, ?, ?)'),
    delWill: db.prepare('DELETE FROM wills WHERE client_id = ?'),
  }
}
