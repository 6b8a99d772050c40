// Readiness: whether the gateway's databases take writes now.
import { statSync } from 'node:fs'
import type { DeviceDatabase } from '../../runtime/stores/sqlite/index.js'

const inode = (file: string): number | undefined => {
  try {
    return statSync(file).ino
  } catch {
    return undefined
  }
}

/**
 * A check of the database files as they are now. One deleted or replaced while the gateway runs
 * takes its writes to an unlinked file (lost at the next start, devices and all) and leaves
 * `outpost devices` unable to revoke anything: the gateway is not ready then (`gone` is told).
 */
export function createWritableCheck(opts: { files: readonly string[]; database: DeviceDatabase; broker?: { writable(): boolean }; gone: (files: string[]) => void }): () => boolean {
  const { database } = opts
  // The files as they were opened.
  const opened = opts.files.map((f) => [f, inode(f)] as const)
  return () => {
    const gone = opened.filter(([f, ino]) => inode(f) !== ino).map(([f]) => f)
    if (gone.length > 0) {
      opts.gone(gone)
      return false
    }
    // broker.db too: on a full or read-only disk its commits fail, no QoS 1 message is
    // acknowledged, and gateway.db's lock check alone said ready.
    if (opts.broker !== undefined && !opts.broker.writable()) return false
    // Without waiting for the lock: a readiness probe every few seconds while another
    // process held it (a sqlite3 shell, a backup) kept the whole gateway in SQLite's
    // 5 s busy wait, broker and HTTP with it, most of the time.
    const waitMs = database.db.pragma('busy_timeout', { simple: true }) as number
    database.db.pragma('busy_timeout = 0')
    try {
      database.db.prepare('BEGIN IMMEDIATE').run()
      database.db.prepare('ROLLBACK').run()
      return true
    } catch {
      return false
    } finally {
      database.db.pragma(`busy_timeout = ${waitMs}`)
    }
  }
}
