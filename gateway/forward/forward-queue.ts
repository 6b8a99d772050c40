// The gateway's forward queue, `<dataDir>/forward.db`: every event on its way to a cloud target is
// written here (one row per target) before the device's publish is acknowledged, and removed once
// the target confirmed it. Rows refused for good move to the dead-letter table with the reason
// (`outpost forward dead …` inspects, redrives or purges them).
import type { Statement } from 'better-sqlite3'
import { ErrorCode, OutpostError } from '../../runtime/errors.js'
import { openDeviceDatabase, toStoreError, type DeviceDatabase, type Migration } from '../../runtime/stores/sqlite/index.js'
import { DISK_RESERVE_BYTES, diskSpaceLeft } from './disk-reserve.js'
import type { WhenFull } from './forward-config.js'
import type { ForwardMessage } from './target.js'

/** The forward database schema, oldest first. Append only: never edit a released step. */
export const FORWARD_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'events on their way to cloud targets; those refused for good',
    up(db) {
      db.exec(`
        CREATE TABLE queue (
          seq           INTEGER PRIMARY KEY AUTOINCREMENT,
          target        TEXT    NOT NULL,
          device        TEXT    NOT NULL,
          id            TEXT    NOT NULL,
          subject       TEXT    NOT NULL,
          headers       TEXT    NOT NULL,
          content_type  TEXT    NOT NULL,
          body          BLOB    NOT NULL,
          bytes         INTEGER NOT NULL,
          received_at   INTEGER NOT NULL
        );
        CREATE INDEX queue_by_target ON queue (target, seq);
        CREATE TABLE dead (
          seq           INTEGER PRIMARY KEY,
          target        TEXT    NOT NULL,
          device        TEXT    NOT NULL,
          id            TEXT    NOT NULL,
          subject       TEXT    NOT NULL,
          headers       TEXT    NOT NULL,
          content_type  TEXT    NOT NULL,
          body          BLOB    NOT NULL,
          bytes         INTEGER NOT NULL,
          received_at   INTEGER NOT NULL,
          failed_at     INTEGER NOT NULL,
          reason        TEXT    NOT NULL
        );
        CREATE INDEX dead_by_target ON dead (target, seq);
      `)
    },
  },
]

/** An event for one target, before it has a place in the queue. */
export type NewForwardMessage = Omit<ForwardMessage, 'seq'> & { readonly target: string }

/** A message that the target refused for good, as the dead-letter table keeps it. */
export interface DeadMessage extends ForwardMessage {
  readonly target: string
  readonly failedAt: number
  readonly reason: string
}

/** How full one target's queue is. */
export interface Backlog {
  messages: number
  bytes: number
  /** When the oldest queued message reached the gateway (epoch ms); undefined when none is queued. */
  oldestAt: number | undefined
}

/** What `append` did with one event's rows. */
export interface AppendResult {
  /** Rows queued. */
  queued: number
  /** Rows not queued, by target: the target's queue was full and its policy is `drop-newest`. */
  droppedNewest: string[]
  /** Older rows dropped to make room (`drop-oldest`), by target. */
  droppedOldest: Record<string, number>
  /** The rows queued, with their places (seq), in order: the pumps take new rows from here instead of reading them back. */
  messages: (ForwardMessage & { readonly target: string })[]
}

/** Limits of one target's queue. */
export interface QueueLimit {
  maxBytes: number
  whenFull: WhenFull
}

export interface ForwardQueue {
  /**
   * Queues the rows of each event, all events in one transaction (the group commit of a tick).
   * An event with a row for a full `refuse` target is refused whole: nothing of it is queued,
   * and its result is undefined (the device is not acknowledged and sends it again later).
   * @throws STORE_* when the database cannot take the write (nothing was queued)
   */
  append(events: readonly (readonly NewForwardMessage[])[]): (AppendResult | undefined)[]
  /** Up to `limit` messages of `target` after `afterSeq`, oldest first. */
  next(target: string, afterSeq: number, limit: number): ForwardMessage[]
  /**
   * Removes messages the target confirmed (one transaction); seqs already gone are skipped.
   * `bytes`, what their rows count for together when the caller knows it, spares reading it back.
   */
  remove(target: string, seqs: readonly number[], bytes?: number): void
  /**
   * Moves a message to the dead-letter table with the reason. A target's dead letters are bounded
   * by its `maxBytes`, as its queue is: beyond it the oldest are deleted (counted by `deadEvicted`).
   */
  deadLetter(target: string, seq: number, reason: string, at: number): void
  backlog(target: string): Backlog
  /** Dead letters, oldest first (optionally of one target). */
  dead(opts?: { target?: string; limit?: number }): DeadMessage[]
  /** Puts dead letters back at the end of their target's queue; their number. */
  redrive(opts?: { target?: string; seqs?: readonly number[] }): number
  /** Deletes dead letters; their number. */
  purge(opts?: { target?: string; seqs?: readonly number[] }): number
  /** Dead letters per target. */
  deadCount(target: string): number
  /** Dead letters of `target` deleted to keep its dead letters within `maxBytes`, since the queue was opened. */
  deadEvicted(target: string): number
  readonly database: DeviceDatabase
  close(): void
}

interface Row {
  seq: number
  target: string
  device: string
  id: string
  subject: string
  headers: string
  content_type: string
  body: Buffer
  bytes: number
  received_at: number
}

const toMessage = (r: Row): ForwardMessage => ({
  seq: r.seq,
  id: r.id,
  device: r.device,
  subject: r.subject,
  headers: JSON.parse(r.headers) as Record<string, string>,
  contentType: r.content_type,
  body: r.body,
  receivedAt: r.received_at,
  bytes: r.bytes,
})

const REMOVE_BATCH = 64

/** What a row takes, counted against a target's `maxBytes`: body, headers and subject. */
export const rowBytes = (m: Pick<NewForwardMessage, 'body' | 'headers' | 'subject'>, headersJson: string): number => m.body.length + headersJson.length + m.subject.length

/**
 * Opens the forward queue: `<dataDir>/forward.db` (WAL, synchronous NORMAL: a commit survives
 * the gateway being killed; the gateway.db lock keeps a second gateway off the folder), or an
 * in-memory one. `limits` per target name; a target without one has no bound.
 * @throws STORE_* as openDeviceDatabase
 */
export function openForwardQueue(opts: {
  path: string
  limits: Record<string, QueueLimit>
  access?: 'device' | 'tool'
  /** Disk space beyond the reserve, bytes (negative: within it); default: forward.db's file system, read at each append. */
  spaceLeft?: () => number | undefined
}): ForwardQueue {
  const access = opts.access ?? 'device'
  // The gateway's connection waits briefly for a lock (as broker.db does): another process holding
  // forward.db's write lock froze MQTT, HTTP and the targets' confirmations for 5 s per commit. A
  // commit that gives up is not acknowledged (the devices send again); a removal is tried again.
  // Tools (`outpost forward …`) keep the default wait.
  const database = openDeviceDatabase({ path: opts.path, access, migrations: FORWARD_MIGRATIONS, onCorrupt: 'fail', lock: false, ...(access === 'device' ? { busyTimeoutMs: 200 } : {}) })
  const db = database.db
  const spaceLeft = opts.spaceLeft ?? (access === 'device' && opts.path !== ':memory:' ? diskSpaceLeft(opts.path, db) : () => undefined)
  const insert = db.prepare('INSERT INTO queue (target, device, id, subject, headers, content_type, body, bytes, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)')
  const nextStmt = db.prepare('SELECT * FROM queue WHERE target = ? AND seq > ? ORDER BY seq LIMIT ?') as Statement<[string, number, number], Row>
  const removeStmt = db.prepare('DELETE FROM queue WHERE seq = ? AND target = ? RETURNING bytes') as Statement<[number, string], { bytes: number }>
  // Confirmed messages go REMOVE_BATCH at a time; without RETURNING (a quarter less CPU a row)
  // when the caller knows their bytes.
  const REMOVE_SQL = `DELETE FROM queue WHERE target = ? AND seq IN (${Array.from({ length: REMOVE_BATCH }, () => '?').join(', ')})`
  const removeMany = db.prepare(`${REMOVE_SQL} RETURNING bytes`) as Statement<(string | number)[], { bytes: number }>
  const removeKnown = db.prepare(REMOVE_SQL) as Statement<(string | number)[]>
  const removeOne = db.prepare('DELETE FROM queue WHERE seq = ? AND target = ?')
  const oldestStmt = db.prepare('SELECT seq, bytes FROM queue WHERE target = ? ORDER BY seq LIMIT ?') as Statement<[string, number], { seq: number; bytes: number }>
  const oldestAtStmt = db.prepare('SELECT received_at AS at FROM queue WHERE target = ? ORDER BY seq LIMIT 1').pluck() as Statement<[string], number>
  const getStmt = db.prepare('SELECT * FROM queue WHERE seq = ? AND target = ?') as Statement<[number, string], Row>
  const toDead = db.prepare('INSERT INTO dead SELECT seq, target, device, id, subject, headers, content_type, body, bytes, received_at, ?, ? FROM queue WHERE seq = ? AND target = ?')
  const deadCountStmt = db.prepare('SELECT count(*) FROM dead WHERE target = ?').pluck() as Statement<[string], number>

  const oldestDeadStmt = db.prepare('SELECT seq, bytes FROM dead WHERE target = ? ORDER BY seq LIMIT 64') as Statement<[string], { seq: number; bytes: number }>
  const deleteDeadStmt = db.prepare('DELETE FROM dead WHERE seq = ?')
  const dataVersionStmt = db.prepare('PRAGMA data_version').pluck() as Statement<[], number>

  // Bytes and messages per target, queued and dead, in memory (counted again as `sync` says).
  const bytes = new Map<string, number>()
  const counts = new Map<string, number>()
  const deadBytes = new Map<string, number>()
  const evicted = new Map<string, number>()
  const add = (target: string, n: number, b: number): void => {
    bytes.set(target, (bytes.get(target) ?? 0) + b)
    counts.set(target, (counts.get(target) ?? 0) + n)
  }
  const addDead = (target: string, b: number): void => void deadBytes.set(target, (deadBytes.get(target) ?? 0) + b)
  // The in-memory counts follow the transaction: a rolled-back append or removal is counted again from the table.
  const recount = (): void => {
    bytes.clear()
    counts.clear()
    deadBytes.clear()
    for (const r of db.prepare('SELECT target, count(*) AS n, sum(bytes) AS b FROM queue GROUP BY target').all() as { target: string; n: number; b: number }[]) add(r.target, r.n, r.b)
    for (const r of db.prepare('SELECT target, sum(bytes) AS b FROM dead GROUP BY target').all() as { target: string; b: number }[]) addDead(r.target, r.b)
  }
  recount()
  /**
   * Counts again when another connection committed since the last look (data_version): rows
   * `outpost forward redrive` put in, never counted here, then removed as confirmed, made the
   * backlog negative (and `maxBytes` no longer held).
   */
  let seenVersion = dataVersionStmt.get()
  const sync = (): void => {
    const v = dataVersionStmt.get()
    if (v === seenVersion) return
    seenVersion = v
    recount()
  }

  /** Drops the oldest rows of `target` until `need` more bytes fit; the number dropped. */
  const makeRoom = (target: string, need: number, max: number): number => {
    let dropped = 0
    while ((bytes.get(target) ?? 0) + need > max && (counts.get(target) ?? 0) > 0) {
      const oldest = oldestStmt.all(target, 64)
      for (const o of oldest) {
        if ((bytes.get(target) ?? 0) + need <= max) break
        removeStmt.get(o.seq, target)
        add(target, -1, -o.bytes)
        dropped++
      }
    }
    return dropped
  }

  const filterSeqs = (base: string, o: { target?: string; seqs?: readonly number[] } = {}): { sql: string; args: (string | number)[] } => {
    const where: string[] = []
    const args: (string | number)[] = []
    if (o.target !== undefined) {
      where.push('target = ?')
      args.push(o.target)
    }
    if (o.seqs !== undefined) {
      where.push(`seq IN (${o.seqs.map(() => '?').join(', ') || 'NULL'})`)
      args.push(...o.seqs)
    }
    return { sql: `${base}${where.length === 0 ? '' : ` WHERE ${where.join(' AND ')}`}`, args }
  }

  const guard = <T>(fn: () => T): T => {
    try {
      return database.transaction(() => {
        database.onRollback(recount)
        return fn()
      })
    } catch (err) {
      throw toStoreError(err, opts.path, 'run')
    }
  }

  return {
    database,
    append(events) {
      // A disk within its reserve takes no new event, as a full one would not (the devices keep
      // them and send them again), while removing what the targets confirm still has room: on a
      // disk filled to the last byte, confirmed rows could not be removed (a delete writes to the
      // WAL, a checkpoint grows the file), and forwarding stopped for good.
      if ((spaceLeft() ?? Infinity) < 0) {
        throw new OutpostError(ErrorCode.STORE_FULL, `forward queue ${opts.path}: the disk is nearly full (what a checkpoint needs and ${DISK_RESERVE_BYTES / 1024 / 1024} MiB more, or a tenth of a smaller disk, are kept for removing what targets confirm); new events wait in the devices`, { retryable: true })
      }
      return guard(() => {
        sync()
        return events.map((rows) => {
          const encoded = rows.map((m) => {
            const headers = JSON.stringify(m.headers)
            return { m, headers, size: rowBytes(m, headers) }
          })
          // A full `refuse` target refuses the whole event: the device keeps it and sends it again.
          for (const { m, size } of encoded) {
            const limit = opts.limits[m.target]
            if (limit?.whenFull === 'refuse' && (bytes.get(m.target) ?? 0) + size > limit.maxBytes) return undefined
          }
          const result: AppendResult = { queued: 0, droppedNewest: [], droppedOldest: {}, messages: [] }
          for (const { m, headers, size } of encoded) {
            const limit = opts.limits[m.target]
            if (limit !== undefined && (bytes.get(m.target) ?? 0) + size > limit.maxBytes) {
              if (limit.whenFull === 'drop-newest' || size > limit.maxBytes) {
                result.droppedNewest.push(m.target)
                continue
              }
              const n = makeRoom(m.target, size, limit.maxBytes)
              if (n > 0) result.droppedOldest[m.target] = (result.droppedOldest[m.target] ?? 0) + n
            }
            const seq = Number(insert.run(m.target, m.device, m.id, m.subject, headers, m.contentType, m.body, size, m.receivedAt).lastInsertRowid)
            result.messages.push({ ...m, seq, bytes: size })
            add(m.target, 1, size)
            result.queued++
          }
          return result
        })
      })
    },
    next(target, afterSeq, limit) {
      return nextStmt.all(target, afterSeq, limit).map(toMessage)
    },
    remove(target, seqs, known) {
      if (seqs.length === 0) return
      guard(() => {
        sync()
        let i = 0
        if (known !== undefined) {
          let gone = 0
          for (; i + REMOVE_BATCH <= seqs.length; i += REMOVE_BATCH) gone += removeKnown.run(target, ...seqs.slice(i, i + REMOVE_BATCH)).changes
          for (; i < seqs.length; i++) gone += removeOne.run(seqs[i]!, target).changes
          // Some were gone already (removed by another process): counted again from the table.
          if (gone === seqs.length) add(target, -gone, -known)
          else recount()
          return
        }
        for (; i + REMOVE_BATCH <= seqs.length; i += REMOVE_BATCH) {
          for (const gone of removeMany.all(target, ...seqs.slice(i, i + REMOVE_BATCH))) add(target, -1, -gone.bytes)
        }
        for (; i < seqs.length; i++) {
          const gone = removeStmt.get(seqs[i]!, target)
          if (gone !== undefined) add(target, -1, -gone.bytes)
        }
      })
    },
    deadLetter(target, seq, reason, at) {
      guard(() => {
        sync()
        const row = getStmt.get(seq, target)
        if (row === undefined) return
        toDead.run(at, reason.slice(0, 1000), seq, target)
        removeStmt.get(seq, target)
        add(target, -1, -row.bytes)
        addDead(target, row.bytes)
        // A device that sends what the target refuses (a subject it cannot take, a frame over its
        // limit) made this table grow without bound, until the disk was full for every device.
        const max = opts.limits[target]?.maxBytes
        if (max === undefined) return
        while ((deadBytes.get(target) ?? 0) > max) {
          const oldest = oldestDeadStmt.all(target)
          if (oldest.length === 0) break
          for (const o of oldest) {
            if ((deadBytes.get(target) ?? 0) <= max) break
            deleteDeadStmt.run(o.seq)
            addDead(target, -o.bytes)
            evicted.set(target, (evicted.get(target) ?? 0) + 1)
          }
        }
      })
    },
    backlog(target) {
      sync()
      const messages = counts.get(target) ?? 0
      return { messages, bytes: bytes.get(target) ?? 0, oldestAt: messages === 0 ? undefined : oldestAtStmt.get(target) }
    },
    dead(o = {}) {
      const { sql, args } = filterSeqs('SELECT * FROM dead', o)
      const rows = db.prepare(`${sql} ORDER BY seq LIMIT ?`).all(...args, o.limit ?? 1000) as (Row & { failed_at: number; reason: string })[]
      return rows.map((r) => ({ ...toMessage(r), target: r.target, failedAt: r.failed_at, reason: r.reason }))
    },
    redrive(o = {}) {
      return guard(() => {
        const { sql, args } = filterSeqs('SELECT * FROM dead', o)
        const rows = db.prepare(`${sql} ORDER BY seq`).all(...args) as Row[]
        sync()
        for (const r of rows) {
          insert.run(r.target, r.device, r.id, r.subject, r.headers, r.content_type, r.body, r.bytes, r.received_at)
          add(r.target, 1, r.bytes)
          deleteDeadStmt.run(r.seq)
          addDead(r.target, -r.bytes)
        }
        return rows.length
      })
    },
    purge(o = {}) {
      return guard(() => {
        const { sql, args } = filterSeqs('DELETE FROM dead', o)
        const n = db.prepare(sql).run(...args).changes
        recount()
        return n
      })
    },
    deadCount(target) {
      return deadCountStmt.get(target) ?? 0
    },
    deadEvicted(target) {
      return evicted.get(target) ?? 0
    },
    close() {
      database.close()
    },
  }
}
