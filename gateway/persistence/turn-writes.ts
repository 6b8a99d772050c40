import type { Logger } from 'pino'
import { ErrorCode, errorCode, errorMessage, OutpostError } from '../../runtime/errors.js'
import type { DeviceDatabase } from '../../runtime/stores/sqlite/index.js'
import { diskIsFull } from '../../runtime/stores/sqlite/store-error.js'

/** broker.db's writes, committed together once per turn of the event loop. */
export interface TurnWrites {
  /** Queues a write for this turn's transaction. @returns a promise settled once it is committed */
  write(fn: () => void): Promise<void>
  /**
   * A write of delivery bookkeeping (a packet id given, a message acknowledged): memory is right
   * already, and a failed commit only means the message may be sent again after a restart. It
   * does not fail the delivery: on a full disk every delivery failed, and a returning session
   * was cut off again and again without ever getting its queue (the failure is logged).
   */
  bookkeeping(fn: () => void): Promise<void>
  /** Whether this turn's transaction is still to come. */
  readonly scheduled: boolean
  /** Whether broker.db takes commits now, for readiness (see createTurnWrites). */
  writable(): boolean
  /** Commits what is pending; later writes are refused. Idempotent. */
  close(): void
}

/**
 * Creates the writer of broker.db: every change is queued and the turn's changes commit in one
 * transaction (each QoS 1 delivery costs a store and a clear, and hundreds commit together); a
 * write's promise resolves only after its commit. A failed commit rejects what waited for it, and
 * the broker goes on: its state in memory is ahead of the file until a commit goes through.
 */
export function createTurnWrites(database: DeviceDatabase, opts: { log?: Logger; logIntervalMs: number }): TurnWrites {
  const { log, logIntervalMs } = opts
  let writes: (() => void)[] = []
  let waiting: { resolve: () => void; reject: (err: unknown) => void }[] = []
  let scheduled = false
  let closed = false
  /** The commits failing since `since` (full, read-only or locked disk), until one goes through. */
  let failure: { code: ErrorCode; since: number; failures: number; logged: boolean } | undefined
  /** When a failure of each code was last logged, and how many came since without a line. */
  const failLogged = new Map<ErrorCode, { at: number; unlogged: number }>()
  let probedAt = 0

  const write = (fn: () => void): Promise<void> => {
    if (closed) return Promise.reject(new OutpostError(ErrorCode.STORE_FAILED, 'broker database is closed'))
    writes.push(fn)
    const done = new Promise<void>((resolve, reject) => waiting.push({ resolve, reject }))
    if (!scheduled) {
      scheduled = true
      setImmediate(flush)
    }
    return done
  }

  /** Commits every queued write in one transaction, then settles their promises. */
  const flush = (): void => {
    scheduled = false
    const these = writes
    const told = waiting
    if (these.length === 0) return
    writes = []
    waiting = []
    try {
      database.transaction(() => {
        for (const w of these) w()
      })
    } catch (err) {
      // What waits is told (a QoS 1 PUBLISH gets no PUBACK, its client is disconnected and sends it again).
      failed(err)
      for (const w of told) w.reject(err)
      return
    }
    if (failure !== undefined) recovered()
    for (const w of told) w.resolve()
  }

  /**
   * Notes a commit that failed. On a full, read-only or locked disk every turn with a write fails,
   * hundreds a second under a flood, and a disk with a little room fails and succeeds by turns:
   * each code is logged at most once a minute, with the count of failures the line stands for,
   * so the log cannot fill what is left of the disk.
   */
  const failed = (err: unknown): void => {
    const code = errorCode(err)
    const now = Date.now()
    if (failure?.code !== code) failure = { code, since: now, failures: 0, logged: false }
    const f = failure
    f.failures++
    const last = failLogged.get(code)
    if (last !== undefined && now - last.at < logIntervalMs) {
      last.unlogged++
      return
    }
    failLogged.set(code, { at: now, unlogged: 0 })
    f.logged = true
    log?.error(
      { code, err: errorMessage(err), count: (last?.unlogged ?? 0) + 1, since: new Date(f.since).toISOString() },
      `${code}: broker database cannot be written; QoS 1 messages are not acknowledged and state changes not kept until it can`,
    )
  }

  /** A commit went through again after failures: said when the failure was. */
  const recovered = (): void => {
    const f = failure!
    failure = undefined
    if (f.logged) log?.warn({ code: f.code, failures: f.failures, forMs: Date.now() - f.since }, 'broker database takes writes again')
  }

  return {
    write,
    bookkeeping: (fn) => write(fn).catch(() => {}),
    get scheduled() {
      return scheduled
    },
    /**
     * After a failed commit broker.db is not writable until a commit goes through; with no traffic
     * none would, so this tries one itself (at most once a second, without waiting for a lock):
     * PRAGMA user_version set to what it is, which writes the header page like any change and
     * alters nothing. After STORE_FULL the disk must also have room again: the failed commit left
     * log space behind that a one-page commit fits in, while the next message does not.
     */
    writable() {
      if (closed) return false
      if (failure === undefined) return true
      if (failure.code === ErrorCode.STORE_FULL && diskIsFull(database.path)) return false
      const now = Date.now()
      if (now - probedAt < 1_000) return false
      probedAt = now
      const db = database.db
      if (db.inTransaction) return false
      const busy = db.pragma('busy_timeout', { simple: true }) as number
      try {
        db.pragma('busy_timeout = 0')
        const version = db.pragma('user_version', { simple: true }) as number
        database.transaction(() => db.pragma(`user_version = ${version}`))
      } catch {
        return false
      } finally {
        db.pragma(`busy_timeout = ${busy}`)
      }
      recovered()
      return true
    },
    close() {
      if (closed) return
      flush()
      closed = true
    },
  }
}
