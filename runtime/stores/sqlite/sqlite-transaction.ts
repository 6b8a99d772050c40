import type Database from 'better-sqlite3'
import type { DeviceTransaction } from '../../ports/device-transaction.js'
import { toStoreError } from './store-error.js'

/**
 * The transactions of one connection to the device database, with the hooks its stores use to
 * keep their in-memory state in step (see DeviceDatabase for each member).
 */
export interface SqliteTransactions {
  transaction<T>(fn: () => T): T
  readonly inTransaction: boolean
  onRollback(fn: () => void): void
  beforeCommit(fn: () => void): void
  /** `transaction` as the device-transaction port, for the stores that must commit together. */
  readonly deviceTransaction: DeviceTransaction
}

/**
 * Creates the transactions of a connection: `BEGIN IMMEDIATE … COMMIT` outermost, a savepoint
 * when one is open, with the statements prepared once. SQLite's errors leave the outermost level
 * as storage errors naming `path`'s kind of trouble (STORE_BUSY, STORE_FULL, …).
 */
export function createSqliteTransactions(db: Database.Database, path: string): SqliteTransactions {
  const begin = db.prepare('BEGIN IMMEDIATE')
  const commit = db.prepare('COMMIT')
  const rollback = db.prepare('ROLLBACK')
  const savepoint = db.prepare('SAVEPOINT outpost')
  const release = db.prepare('RELEASE outpost')
  const rollbackTo = db.prepare('ROLLBACK TO outpost')
  // One list of rollback work per open level: a released savepoint hands its list to the level below.
  const undo: (() => void)[][] = []
  let committing = new Set<() => void>()
  const runCommitting = (): void => {
    while (committing.size > 0) {
      const fns = committing
      committing = new Set()
      for (const fn of fns) fn()
    }
  }
  const rolledBack = (): void => {
    for (const fn of undo.pop() ?? []) fn()
  }
  function transaction<T>(fn: () => T): T {
    const nested = db.inTransaction
    // The outermost level of these transactions (a savepoint when someone opened one on `db`
    // directly) runs the work registered before commit.
    const outermost = undo.length === 0
    try {
      // Work gathered so far belongs to the level that is open: written before a savepoint opens.
      if (!outermost) runCommitting()
      nested ? savepoint.run() : begin.run()
    } catch (err) {
      throw outermost ? toStoreError(err, path, 'run') : err
    }
    undo.push([])
    let result: T
    try {
      result = fn()
      if (outermost) runCommitting()
    } catch (err) {
      // (An I/O error may have ended the whole transaction already: then there is nothing to roll back.)
      if (nested && db.inTransaction) {
        rollbackTo.run()
        release.run()
      } else if (!nested && db.inTransaction) rollback.run()
      if (outermost) committing.clear()
      rolledBack()
      // SQLite's errors leave as storage errors (STORE_BUSY, STORE_FULL, …), once, at the outermost level.
      throw outermost ? toStoreError(err, path, 'run') : err
    }
    try {
      nested ? release.run() : commit.run()
    } catch (err) {
      if (db.inTransaction && !nested) rollback.run()
      if (outermost) committing.clear()
      rolledBack()
      throw outermost ? toStoreError(err, path, 'run') : err
    }
    const mine = undo.pop()!
    if (nested) undo.at(-1)?.push(...mine)
    return result
  }
  return {
    transaction,
    get inTransaction() {
      return undo.length > 0
    },
    onRollback: (fn) => void undo.at(-1)?.push(fn),
    beforeCommit: (fn) => void committing.add(fn),
    deviceTransaction: { run: transaction },
  }
}
