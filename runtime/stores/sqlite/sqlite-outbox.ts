import type { Outbox, OutboxEntry, OutboxStreamLimits } from '../../ports/outbox.js'
import type { DeviceDatabase } from './device-database.js'
import { prepareLater } from './prepare-later.js'
import { storeOn, toStoreError } from './store-error.js'
import { createOutboxAccounting } from '../outbox-accounting.js'

interface Row {
  seq: number
  stream: string
  topic: string
  frame: Buffer
  retain: number
}

/**
 * A copy of a frame the tail keeps. Small frames are carved from Node's shared buffer pool
 * (Buffer.allocUnsafe, then filled at once): a slice made an ArrayBuffer of its own per event,
 * which cost four times as much to make and to collect.
 */
const copyOf = (frame: Uint8Array): Buffer => {
  const copy = Buffer.allocUnsafe(frame.length)
  copy.set(frame)
  return copy
}

/**
 * Creates the outbox in the device database: entries survive restarts and power cuts. Its appends
 * join the database's device transaction (`database.deviceTransaction`) when one is open, which
 * a queue store on the same database shares: a result event commits with the job's settlement.
 */
export function createSqliteOutbox(database: DeviceDatabase, opts: { limits?: Record<string, OutboxStreamLimits>; now?: () => number } = {}): Outbox {
  return storeOn(database, () => makeSqliteOutbox(database, opts))
}

// Built through storeOn: a file that lacks a table is a typed error (store-error.ts).
function makeSqliteOutbox(database: DeviceDatabase, opts: { limits?: Record<string, OutboxStreamLimits>; now?: () => number } = {}): Outbox {
  const db = database.db
  const now = opts.now ?? Date.now
  const totals = db.prepare<[], { stream: string; bytes: number; entries: number }>('SELECT stream, SUM(bytes) AS bytes, COUNT(*) AS entries FROM outbox GROUP BY stream')
  const acct = createOutboxAccounting(opts.limits, totals.all())
  // The newest entries, as appended: a pump that keeps up reads them from here, not back from
  // the file. Only a contiguous tail is kept; a rollback or a drop clears it. When it fills up
  // (offline, or a pump that falls behind) it is dropped and stays off until a read from the
  // file reaches the end: a backlog lives on disk, not in memory.
  const TAIL = 256
  let tail: OutboxEntry[] = []
  let tailLive = true
  // Appends inside a transaction wait here and are inserted together just before it commits:
  // one INSERT of up to ROWS_PER_INSERT rows costs less than as many single-row INSERTs. Their
  // seqs are known when appended (the transaction holds the write lock, so nobody else takes
  // one), which keeps `append` returning its seq.
  interface Pending {
    seq: number
    stream: string
    topic: string
    frame: Uint8Array
    retain: number
    size: number
    at: number
  }
  let pending: Pending[] = []
  // An append inside a larger transaction (a job's result event) is undone with it: count again.
  const recount = (): void => {
    tail = []
    end = Infinity
    droppedTo.clear()
    const current = totals.all()
    for (const p of pending) {
      const row = current.find((c) => c.stream === p.stream)
      if (row === undefined) current.push({ stream: p.stream, bytes: p.size, entries: 1 })
      else {
        row.bytes += p.size
        row.entries++
      }
    }
    acct.recount(current)
  }
  // The newest seq known to be in the file (Infinity: not known). A pump that has sent up to it
  // has nothing to read, and is told so without a query (and without deleting acknowledged
  // entries first, which would be a commit of its own each time the pump catches up).
  let end = Infinity
  const ROWS_PER_INSERT = 16
  const PENDING_MAX = 256
  const ROW = '(?, ?, ?, ?, ?, ?, ?)'
  const INSERT = 'INSERT INTO outbox (seq, stream, topic, frame, retain, bytes, created_at) VALUES '
  const insertOne = db.prepare(INSERT + ROW)
  const insertNow = db.prepare('INSERT INTO outbox (stream, topic, frame, retain, bytes, created_at) VALUES (?, ?, ?, ?, ?, ?)')
  const insertMany = db.prepare(INSERT + Array(ROWS_PER_INSERT).fill(ROW).join(', '))
  const lastSeq = db.prepare<[], number>("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").pluck(true)
  // Bound as arguments (spread), not as one array: better-sqlite3 reads an array's elements one
  // property lookup at a time (a microbenchmark of the 16-row insert: 2.5–3.6 against 1.2–2.5 µs per row).
  const args: unknown[] = []
  const put = (p: Pending): void => void args.push(p.seq, p.stream, p.topic, p.frame, p.retain, p.size, p.at)
  /** Inserts what waits (inside the transaction it was appended in). */
  const insertPending = (): void => {
    const rows = pending
    pending = []
    let i = 0
    for (; i + ROWS_PER_INSERT <= rows.length; i += ROWS_PER_INSERT) {
      args.length = 0
      for (let k = i; k < i + ROWS_PER_INSERT; k++) put(rows[k]!)
      insertMany.run(...args)
    }
    for (; i < rows.length; i++) {
      args.length = 0
      put(rows[i]!)
      insertOne.run(...args)
    }
    args.length = 0
  }
  // `LIMIT ? + 0`, not `LIMIT ?`: SQLite 3.53 reads a bare bound LIMIT when it prepares the
  // statement, and then parses and plans it again each time that parameter is bound.
  const select = db.prepare<[number, number], Row>('SELECT seq, stream, topic, frame, retain FROM outbox WHERE seq > ? ORDER BY seq LIMIT ? + 0')
  const remove = db.prepare<[number], { stream: string; bytes: number }>('DELETE FROM outbox WHERE seq = ? RETURNING stream, bytes')
  // Acknowledgements are deleted in groups: one commit for many PUBACKs (every 512, or FLUSH_MS
  // after the first of a group; before closing, and before reading back from the file). An entry acknowledged
  // but not yet deleted when the power goes is sent again after restart (at least once).
  let acked: number[] = []
  const FLUSH_MS = 50
  const sumRange = db.prepare<[number, number], { stream: string; bytes: number; n: number }>('SELECT stream, SUM(bytes) AS bytes, COUNT(*) AS n FROM outbox WHERE seq BETWEEN ? AND ? GROUP BY stream')
  const removeRange = db.prepare('DELETE FROM outbox WHERE seq BETWEEN ? AND ?')
  // A pump that keeps up has every row in the file acknowledged: the table is then emptied by a
  // DELETE without WHERE, which SQLite runs by freeing its pages (the truncate optimization).
  // Deleting the rows from the left rebalanced the pages of the rows after them at every
  // commit: in the queue bench, the outbox wrote twice its own bytes to the WAL.
  const bounds = prepareLater<[], { lo: number | null; hi: number | null }>(db, 'SELECT MIN(seq) AS lo, MAX(seq) AS hi FROM outbox')
  const removeEvery = prepareLater(db, 'DELETE FROM outbox')
  /** Whether every row in the file has a seq from `a` to `b`. */
  const onlyRowsIn = (a: number, b: number): boolean => {
    const r = bounds.get()!
    return r.lo === null || (r.lo >= a && r.hi! <= b)
  }
  // Acks arrive mostly in order: runs of consecutive seqs are deleted with one range statement.
  const removeAll = (seqs: number[]): void => database.transaction(() => {
    seqs.sort((a, b) => a - b)
    // An entry sent again (after a reconnect) may be acknowledged twice.
    let n = 0
    for (const s of seqs) if (n === 0 || s !== seqs[n - 1]) seqs[n++] = s
    seqs.length = n
    let i = 0
    while (i < seqs.length) {
      let j = i
      while (j + 1 < seqs.length && seqs[j + 1] === seqs[j]! + 1) j++
      if (j === i) {
        const r = remove.get(seqs[i]!)
        if (r !== undefined) acct.removed(r.stream, r.bytes, 'delivered')
      } else {
        for (const g of sumRange.all(seqs[i]!, seqs[j]!)) acct.removedMany(g.stream, g.bytes, g.n)
        if (i === 0 && j === seqs.length - 1 && onlyRowsIn(seqs[i]!, seqs[j]!)) removeEvery.run()
        else removeRange.run(seqs[i]!, seqs[j]!)
      }
      i = j + 1
    }
  })
  // One timer at most: a flush for another reason (a full group, stats, close) cancels it.
  let flushTimer: ReturnType<typeof setTimeout> | undefined
  const flushLater = (ms = FLUSH_MS): void => {
    if (flushTimer === undefined) flushTimer = setTimeout(flush, ms).unref()
  }
  // Deleting acknowledged entries that failed (another process held the write lock past the
  // busy wait, a full disk) is tried again after this long; they stay acknowledged meanwhile.
  const FLUSH_RETRY_MS = 1_000
  /**
   * Deletes what was acknowledged inside a device transaction that appends (run just before it
   * commits): the deletes ride on a commit that is made anyway, instead of one of their own
   * (under synchronous FULL, an fsync each). Should that transaction roll back, the entries are
   * acknowledged again, and deleted later. A delete that fails is undone alone (a savepoint) and
   * left to the next flush: it never costs the transaction it rides on.
   */
  const flushHere = (): void => {
    if (acked.length === 0 || database.closed) return
    if (flushTimer !== undefined) {
      clearTimeout(flushTimer)
      flushTimer = undefined
    }
    const seqs = acked
    acked = []
    const delivered = acct.stats.delivered
    try {
      removeAll(seqs)
    } catch {
      acked = seqs.concat(acked)
      acct.stats.delivered = delivered
      try {
        recount()
      } catch {
        // The file cannot be read either: the counts are corrected at the next recount.
      }
      flushLater(FLUSH_RETRY_MS)
      return
    }
    const gone = acct.stats.delivered - delivered
    database.onRollback(() => {
      acked = seqs.concat(acked)
      acct.stats.delivered -= gone
      recount()
    })
  }
  // Entries discarded (never deliverable) and not deleted yet, with the reason they are counted under.
  let discarded = new Map<number, string>()
  /** Deletes the discarded entries in a commit of their own; one that fails is tried again with the next flush. */
  const dropDiscarded = (): void => {
    const todo = discarded
    discarded = new Map()
    // Counted once committed: a commit that fails changes no count.
    let gone: { stream: string; bytes: number; reason: string }[] = []
    try {
      database.transaction(() => {
        gone = []
        for (const [seq, reason] of todo) {
          const r = remove.get(seq)
          if (r !== undefined) gone.push({ stream: r.stream, bytes: r.bytes, reason })
        }
      })
    } catch {
      for (const [seq, reason] of todo) if (!discarded.has(seq)) discarded.set(seq, reason)
      flushLater(FLUSH_RETRY_MS)
      return
    }
    for (const g of gone) acct.removed(g.stream, g.bytes, 'dropped', g.reason)
  }
  /** Deletes what was acknowledged or discarded. Never throws: it runs from timers and the pump. */
  const flush = (): void => {
    if (flushTimer !== undefined) {
      clearTimeout(flushTimer)
      flushTimer = undefined
    }
    if (discarded.size > 0 && !database.closed) {
      if (db.inTransaction) flushLater()
      else dropDiscarded()
    }
    if (acked.length === 0 || database.closed) return
    if (db.inTransaction) {
      // Not inside someone else's transaction, which may still roll back: a moment later.
      flushLater()
      return
    }
    const seqs = acked
    acked = []
    try {
      removeAll(seqs)
    } catch {
      // Not deleted yet: kept, and tried again later. Were the process to stop first, they
      // would be sent again after the restart (at least once); the counts are taken again
      // from the file, since part of the group may have been counted before the failure.
      acked = seqs.concat(acked)
      try {
        recount()
      } catch {
        // The file cannot be read either: the counts are corrected at the next recount.
      }
      flushLater(FLUSH_RETRY_MS)
    }
  }
  // A full stream's oldest entries, found by walking the table in seq order (there is no index
  // by stream: every append and delivery would pay for it). The walk starts past the stream's
  // last dropped entry, below which it has none, so rows of other streams are passed over once,
  // not on every drop. A rollback may bring dropped rows back: then it starts from the beginning.
  const oldest = prepareLater<[number, string], { seq: number; bytes: number }>(db, 'SELECT seq, bytes FROM outbox WHERE seq > ? AND stream = ? ORDER BY seq LIMIT 64')
  const droppedTo = new Map<string, number>()
  const drop = prepareLater(db, 'DELETE FROM outbox WHERE seq = ?')

  /** Stores an entry in the open transaction: inserted at once, or with the rest before commit (`later`). */
  const appendNow = (e: Omit<OutboxEntry, 'seq'>, later: boolean): number => {
    const size = e.frame.length
    let over = acct.admit(e.stream, size)
    // Dropped entries come back with a rollback: count again then.
    if (over > 0) database.onRollback(recount)
    // Dropping to make room picks from rows in the file: what waits goes in first.
    if (over > 0 && pending.length > 0) insertPending()
    while (over > 0) {
      const victims = oldest.all(droppedTo.get(e.stream) ?? 0, e.stream)
      if (victims.length === 0) break
      for (const v of victims) {
        if (over <= 0) break
        drop.run(v.seq)
        droppedTo.set(e.stream, v.seq)
        tail = []
        acct.removed(e.stream, v.bytes, 'dropped')
        over -= v.bytes
      }
    }
    let seq: number
    if (!later) {
      seq = Number(insertNow.run(e.stream, e.topic, e.frame, e.retain ? 1 : 0, size, now()).lastInsertRowid)
      database.onRollback(recount) // undone with its transaction: count again
    } else if (pending.length > 0) seq = pending.at(-1)!.seq + 1
    else {
      seq = (lastSeq.get() ?? 0) + 1
      // Acknowledged rows go first: with the new ones not in the file yet, they may be all it holds.
      database.beforeCommit(flushHere)
      database.beforeCommit(insertPending)
      // Undone with its transaction: the entries still waiting leave `pending` (those written out
      // already are rolled back by SQLite). One undo for the whole group, registered by its first
      // entry: a savepoint opening inside the transaction writes out what waits first, so the
      // entries waiting are always of the level this was registered in (or of inner levels
      // released into it).
      const first = seq
      database.onRollback(() => {
        const from = pending.findIndex((p) => p.seq >= first)
        if (from >= 0) pending.length = from
        recount()
      })
    }
    if (later) {
      pending.push({ seq, stream: e.stream, topic: e.topic, frame: e.frame, retain: e.retain ? 1 : 0, size, at: now() })
      // A long transaction (a backlog written in one go) does not hold its entries in memory.
      if (pending.length >= PENDING_MAX) insertPending()
    }
    acct.added(e.stream, size)
    end = seq
    if (tailLive) {
      if (tail.length > 0 && tail.at(-1)!.seq !== seq - 1) tail = []
      if (tail.length >= TAIL) {
        tail = []
        tailLive = false
      } else {
        // A copy: an encoder's frame may be a view into a large buffer that the tail would keep alive.
        tail.push({ seq, stream: e.stream, topic: e.topic, frame: copyOf(e.frame), retain: e.retain })
      }
    }
    return seq
  }
  // Inside a larger transaction (a job's settlement) the append joins it, and is undone with it.
  // Acknowledged entries are deleted only in a commit of their own, never one that may roll back.
  const append = (e: Omit<OutboxEntry, 'seq'>): number => {
    if (database.inTransaction) return appendNow(e, true)
    // Inside a transaction opened on the connection directly, or alone in one of its own: at once.
    if (db.inTransaction) return appendNow(e, false)
    flush()
    return database.transaction(() => appendNow(e, false))
  }

  database.beforeClose(flush)

  return {
    // The database's device transaction: a queue store on the same database takes the same one.
    transaction: database.deviceTransaction,
    append: (e) => append(e),
    peek: (after, limit) => {
      if (tail.length > 0 && tail[0]!.seq <= after + 1) {
        const from = tail.findIndex((t) => t.seq > after)
        return from < 0 ? [] : tail.slice(from, from + limit)
      }
      if (after >= end) return []
      flush()
      let rows: Row[]
      try {
        rows = select.all(after, limit)
      } catch (err) {
        throw toStoreError(err, database.path, 'run')
      }
      if (rows.length < limit) end = rows.length > 0 ? rows.at(-1)!.seq : after
      if (rows.length < limit && !tailLive) {
        // Caught up with the file: what comes next can be read from memory again.
        tail = []
        tailLive = true
      }
      return rows.map((r) => ({ seq: r.seq, stream: r.stream, topic: r.topic, frame: r.frame, retain: r.retain === 1 }))
    },
    ack(seq) {
      // What was delivered leaves the tail too: a pump starting over must not send it again.
      while (tail.length > 0 && tail[0]!.seq <= seq) tail.shift()
      acked.push(seq)
      if (acked.length >= 512) flush()
      else flushLater()
    },
    discard(seq, reason) {
      tail = tail.filter((t) => t.seq !== seq)
      discarded.set(seq, reason)
      flush()
    },
    stats: () => {
      flush()
      return { ...acct.stats, dropped: { ...acct.stats.dropped } }
    },
  }
}
