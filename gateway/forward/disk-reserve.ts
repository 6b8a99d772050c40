// How much of its disk the forward queue may still fill (forward-queue.ts asks at each group
// commit): what is free, with the database's own free pages, less what a checkpoint of the WAL
// needs and a reserve, so that what targets confirm can always be removed.
import { realpathSync, statfsSync, statSync } from 'node:fs'
import path from 'node:path'
import type Database from 'better-sqlite3'
import type { Statement } from 'better-sqlite3'

/**
 * Disk space kept free beyond what a checkpoint of the WAL needs, bytes: 8 MiB, or a tenth of a
 * smaller file system. Below it no event is queued (docs/forwarding.md, *Store and forward*).
 */
export const DISK_RESERVE_BYTES = 8 * 1024 * 1024

/**
 * Space new events may take on the file system that holds `file` (where a link to it points),
 * with the database's free pages, bytes; negative when there is none; undefined when it cannot be read. Not all of what is free:
 * the WAL must stay checkpointable (the database file grows to hold every page the WAL has), and
 * a reserve stays for the deletes of what targets confirm. On a disk filled to the last byte,
 * confirmed rows could not be removed and the WAL never checkpointed: forwarding stopped for good.
 * Read at each group commit (a statfs and a stat: microseconds).
 */
export function diskSpaceLeft(file: string, db: Database.Database): () => number | undefined {
  let real: string | undefined
  const pageSize = db.pragma('page_size', { simple: true }) as number
  const pageCount = db.prepare('PRAGMA page_count').pluck() as Statement<[], number>
  const freePages = db.prepare('PRAGMA freelist_count').pluck() as Statement<[], number>
  return () => {
    try {
      real ??= realpathSync(file)
      const st = statfsSync(path.dirname(real))
      const toCheckpoint = Math.max(0, pageCount.get()! * pageSize - statSync(real).size)
      // Pages of removed rows, which new rows take before the file grows.
      return st.bavail * st.bsize + freePages.get()! * pageSize - toCheckpoint - Math.min(DISK_RESERVE_BYTES, (st.blocks * st.bsize) / 10)
    } catch {
      return undefined
    }
  }
}
