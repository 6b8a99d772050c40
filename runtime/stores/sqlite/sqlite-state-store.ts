import type { StateStore } from '../../ports/state-store.js'
import { createValueCodec } from '../../wire/value-codec.js'
import type { DeviceDatabase } from './device-database.js'
import { prepareLater } from './prepare-later.js'
import { guardStore, storeOn } from './store-error.js'

/** Creates the key-value state store in the device database (values stored as CBOR). @throws STORE_BUSY, STORE_FULL, STORE_READ_ONLY, STORE_FAILED from its methods */
export function createSqliteStateStore(database: DeviceDatabase, now: () => number = Date.now): StateStore {
  return storeOn(database, () => makeSqliteStateStore(database, now))
}

// Built through storeOn: a file that lacks a table is a typed error (store-error.ts).
function makeSqliteStateStore(database: DeviceDatabase, now: () => number = Date.now): StateStore {
  const db = database.db
  const codec = createValueCodec()
  const get = db.prepare<[string, string], { value: Buffer }>('SELECT value FROM kv WHERE scope = ? AND key = ?')
  const put = db.prepare('INSERT INTO kv (scope, key, value, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at')
  const del = prepareLater(db, 'DELETE FROM kv WHERE scope = ? AND key = ?')
  // Prefix match as a key range, so the primary key index serves it (LIKE would not, and would treat % and _ as wildcards).
  const range = prepareLater<[string, string, string], { key: string; value: Buffer }>(db, 'SELECT key, value FROM kv WHERE scope = ? AND key >= ? AND key < ? ORDER BY key')
  const all = prepareLater<[string], { key: string; value: Buffer }>(db, 'SELECT key, value FROM kv WHERE scope = ? ORDER BY key')
  const file = database.path
  return {
    get: guardStore(file, (scope: string, key: string) => {
      const row = get.get(scope, key)
      return row === undefined ? undefined : codec.decode(row.value)
    }),
    set: guardStore(file, (scope: string, key: string, value: unknown) => void put.run(scope, key, codec.encode(value), now())),
    delete: guardStore(file, (scope: string, key: string) => del.run(scope, key).changes > 0),
    list: guardStore(file, (scope: string, prefix = '') => {
      const rows = prefix === '' ? all.all(scope) : range.all(scope, prefix, `${prefix}\u{10FFFF}`)
      return rows.map((r) => ({ key: r.key, value: codec.decode(r.value) }))
    }),
  }
}
