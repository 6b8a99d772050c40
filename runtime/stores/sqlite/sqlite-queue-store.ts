import type { EnqueueInput, Job, JobState, QueueMetrics, QueueStore } from '../../ports/queue-store.js'
import { createNumberedIdFactory } from '../../wire/message-id.js'
import { createValueCodec } from '../../wire/value-codec.js'
import type { DeviceDatabase } from './device-database.js'
import { prepareLater, type LaterStatement } from './prepare-later.js'
import { createQueueClockSteps } from './queue-clock-steps.js'
import { guardStore, storeOn } from './store-error.js'

interface Row {
  n: number
  id: string
  queue: string
  state: JobState
  payload: Buffer
  priority: number
  run_at: number
  attempt: number
  lease_until: number | null
  idem_key: string | null
  created_at: number
  updated_at: number
  output: Buffer | null
  error: string | null
  progress: Buffer | null
  corr: string | null
  traceparent: string | null
  error_code: string | null
  dead_reason: string | null
}

/** A leased row, in the order of LEASED_COLUMNS. */
type LeasedRow = [
  id: string, payloadHex: string, priority: number, run_at: number, attempt: number, created_at: number,
  idem_key: string | null, corr: string | null, traceparent: string | null, error: string | null,
  error_code: string | null, progress: Buffer | null, n: number,
]

/**
 * Order in which leased jobs run: higher priority, then earlier due, then older, then by row (made
 * earlier). Rows come back by number, mostly in this order already, which the sort (TimSort) sees
 * in one comparison each; ties by row number, not id, cost no string comparison.
 */
const leasedOrder = (a: LeasedRow, b: LeasedRow): number => b[2] - a[2] || a[3] - b[3] || a[5] - b[5] || a[12] - b[12]

/**
 * Creates the durable queue store in the device database (payloads and outputs as CBOR). Its
 * methods throw storage errors as OutpostErrors (STORE_BUSY and STORE_FULL retryable). It writes
 * in the database's device transaction (`database.deviceTransaction`), which an outbox on the
 * same database shares: a job's completion and its result event commit together.
 */
export function createSqliteQueueStore(database: DeviceDatabase): QueueStore {
  return storeOn(database, () => makeSqliteQueueStore(database))
}

// Built through storeOn: a file that lacks a table is a typed error (store-error.ts).
function makeSqliteQueueStore(database: DeviceDatabase): QueueStore {
  const db = database.db
  const codec = createValueCodec()
  // Jobs are rows numbered by the store (the table's integer key), and a job's id carries its
  // number: a job is found from its id without an index of ids. Every statement that takes an
  // id also checks it, so a number that does not belong to the id matches nothing.
  const numbered = createNumberedIdFactory()
  // Jobs made before schema v9 kept their ids, which carry no row number: job_ids has theirs.
  const legacyRow = prepareLater<[string], number>(db, 'SELECT n FROM job_ids WHERE id = ?', (st) => st.pluck(true))
  const anyLegacy = db.prepare<[], number>('SELECT EXISTS (SELECT 1 FROM job_ids)').pluck(true)
  const forgetLegacy = prepareLater(db, 'DELETE FROM job_ids WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.n = job_ids.n)')
  let legacy = anyLegacy.get() === 1
  /** The row number of job `id`; -1 when it can be none. */
  const rowOf = (id: string): number => {
    if (typeof id !== 'string') return -1
    const n = legacy ? legacyRow.get(id) : undefined
    return n ?? numbered.numberOf(id)
  }
  const lastRow = db.prepare<[], number | null>('SELECT MAX(n) FROM jobs').pluck(true)
  // The next number to give. Known here, so the id (which carries it) is made before the row
  // is written; another writer on the same file that took it first makes the insert fail, and
  // the number is read again.
  let nextRow = (lastRow.get() ?? 0) + 1
  // Payloads, outputs and progress go through the one value codec (runtime/wire/value-codec.ts);
  // `undefined` is stored as null and read back as undefined.
  const blob = (v: unknown): Uint8Array => codec.encode(v === undefined ? null : v)
  const value = (b: Uint8Array | null): unknown => (b === null ? undefined : (codec.decode(b) ?? undefined))
  const toJob = (r: Row): Job => {
    const job: Job = {
      id: r.id, queue: r.queue, state: r.state, payload: value(r.payload), priority: r.priority, runAt: r.run_at,
      attempt: r.attempt, createdAt: r.created_at, updatedAt: r.updated_at,
    }
    if (r.lease_until !== null) job.leaseUntil = r.lease_until
    if (r.idem_key !== null) job.idempotencyKey = r.idem_key
    if (r.corr !== null) job.correlationId = r.corr
    if (r.traceparent !== null) job.traceparent = r.traceparent
    if (r.output !== null) job.output = value(r.output)
    if (r.error !== null) job.error = r.error
    if (r.error_code !== null) job.errorCode = r.error_code
    if (r.dead_reason !== null) job.deadReason = r.dead_reason
    if (r.progress !== null) job.progress = value(r.progress)
    return job
  }

  const byId = prepareLater<[number, string], Row>(db, 'SELECT * FROM jobs WHERE n = ? AND id = ?')
  const byKey = prepareLater<[string, string], Row>(db, 'SELECT * FROM jobs WHERE queue = ? AND idem_key = ? AND idem_key IS NOT NULL')
  const insert = db.prepare(
    `INSERT INTO jobs (n, id, queue, state, payload, priority, run_at, attempt, idem_key, corr, traceparent, error, error_code, dead_reason, created_at, updated_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?)`,
  )
  // Ready jobs are taken in one statement (index order, then RETURNING the updated rows). Rows
  // come back as arrays of the columns a leased job can have set: better-sqlite3 builds an
  // object per row property by property, which cost more than the UPDATE itself. A job that can
  // be leased has no output and no dead reason (only completed and dead jobs do), so those two
  // are not read back: each column read costs, even a NULL. The payload comes as hex text, made
  // into bytes in Node's buffer pool (a blob is a Buffer of its own per row: 0.4 µs more a job).
  // Their LIMIT is written `? + 0`, not `?`: the SQLite that better-sqlite3 ships (3.53, STAT4)
  // reads a bare `LIMIT ?` at prepare time and expires the statement whenever it is bound again,
  // so every lease was parsed and planned anew (~80 µs); an expression is evaluated at run time.
  const LEASED_COLUMNS = 'id, hex(payload), priority, run_at, attempt, created_at, idem_key, corr, traceparent, error, error_code, progress, n'
  const takeReady = db.prepare<[number, number, string, number, number], LeasedRow>(
    `UPDATE jobs SET state = 'leased', attempt = attempt + 1, lease_until = ?, updated_at = ?
     WHERE n IN (SELECT n FROM jobs WHERE queue = ? AND state = 'ready' AND run_at <= ? ORDER BY priority DESC, run_at, created_at LIMIT ? + 0)
     RETURNING ${LEASED_COLUMNS}`,
  ).raw(true)
  const takeExpired = db.prepare<[number, number, string, number, number], LeasedRow>(
    `UPDATE jobs SET attempt = attempt + 1, lease_until = ?, updated_at = ?
     WHERE n IN (SELECT n FROM jobs WHERE queue = ? AND state = 'leased' AND lease_until <= ? ORDER BY lease_until LIMIT ? + 0)
     RETURNING ${LEASED_COLUMNS}`,
  ).raw(true)
  // toJob's twin for lease rows. Feeding toJob an object built from the array made its
  // property loads see two row shapes, and the whole queue ran 7 % slower.
  const leasedJob = (r: LeasedRow, queue: string, until: number, now: number): Job => {
    const job: Job = {
      id: r[0], queue, state: 'leased', payload: value(Buffer.from(r[1], 'hex')), priority: r[2], runAt: r[3],
      attempt: r[4], createdAt: r[5], updatedAt: now, leaseUntil: until,
    }
    if (r[6] !== null) job.idempotencyKey = r[6]
    if (r[7] !== null) job.correlationId = r[7]
    if (r[8] !== null) job.traceparent = r[8]
    if (r[9] !== null) job.error = r[9]
    if (r[10] !== null) job.errorCode = r[10]
    if (r[11] !== null) job.progress = value(r[11])
    return job
  }
  const extend = prepareLater(db, "UPDATE jobs SET lease_until = ?, updated_at = ?, progress = COALESCE(?, progress) WHERE n = ? AND id = ? AND attempt = ? AND state = 'leased' AND lease_until > ?")
  const FINISH = "UPDATE jobs SET state = 'completed', output = ?, lease_until = NULL, updated_at = ? WHERE n = ? AND id = ? AND attempt = ? AND state = 'leased'"
  const finish = db.prepare<[Uint8Array, number, number, string, number]>(FINISH)
  const finishReturningQueue = prepareLater<[Uint8Array, number, number, string, number], string>(db, `${FINISH} RETURNING queue`, (st) => st.pluck(true))
  // The queue and row of each job this store leased and has not settled, so completing it is
  // counted without reading the queue back (bounded: another store's job reads it back).
  const heldLeases = new Map<string, { queue: string; n: number }>()
  const HELD_LEASES_MAX = 65_536
  /** The row of a job whose lease the verb that follows ends, forgotten as leased here. */
  const leaseEnds = (id: string): number => {
    const held = heldLeases.get(id)
    if (held === undefined) return rowOf(id)
    heldLeases.delete(id)
    return held.n
  }
  // Each queue's completed jobs are counted in `queues`, in the commit that completes or deletes them.
  const countCompleted = db.prepare('INSERT INTO queues (queue, paused, completed) VALUES (?, 0, ?) ON CONFLICT (queue) DO UPDATE SET completed = MAX(0, completed + excluded.completed)')
  const completedOf = prepareLater<[string], number>(db, 'SELECT completed FROM queues WHERE queue = ?', (st) => st.pluck(true))
  const again = prepareLater(db, "UPDATE jobs SET state = 'ready', run_at = ?, error = ?, error_code = ?, lease_until = NULL, updated_at = ? WHERE n = ? AND id = ? AND attempt = ? AND state = 'leased'")
  const giveBack = prepareLater(db, "UPDATE jobs SET state = 'ready', attempt = attempt - 1, run_at = MIN(run_at, ?), lease_until = NULL, updated_at = ? WHERE n = ? AND id = ? AND attempt = ? AND state = 'leased'")
  const bury = prepareLater(db, "UPDATE jobs SET state = 'dead', error = ?, error_code = ?, dead_reason = ?, lease_until = NULL, updated_at = ? WHERE n = ? AND id = ? AND attempt = ? AND state = 'leased'")
  const cancelOne = prepareLater(
    db,
    "UPDATE jobs SET state = 'dead', error = 'cancelled', error_code = 'CANCELLED', dead_reason = 'cancelled', lease_until = NULL, updated_at = ? WHERE n = ? AND id = ? AND state IN ('ready', 'leased')",
  )
  const dead = prepareLater<[string, number], Row>(db, "SELECT * FROM jobs WHERE queue = ? AND state = 'dead' ORDER BY updated_at LIMIT ? + 0") // `? + 0`: see LEASED_COLUMNS
  const redriveAll = prepareLater(db, "UPDATE jobs SET state = 'ready', attempt = 0, run_at = ?, error = NULL, error_code = NULL, dead_reason = NULL, updated_at = ? WHERE queue = ? AND state = 'dead'")
  const redriveOne = prepareLater(db, "UPDATE jobs SET state = 'ready', attempt = 0, run_at = ?, error = NULL, error_code = NULL, dead_reason = NULL, updated_at = ? WHERE n = ? AND id = ? AND queue = ? AND state = 'dead'")
  // One statement per state: SQLite picks a partial index only for a state written into the
  // statement, not one bound as a parameter. Completed jobs have no index: purging them scans.
  const STATES: readonly JobState[] = ['ready', 'leased', 'completed', 'dead']
  const purgeState = Object.fromEntries(STATES.map((st) => [st, prepareLater<[string]>(db, `DELETE FROM jobs WHERE queue = ? AND state = '${st}'`)])) as Record<JobState, LaterStatement<[string], unknown>>
  // Completed jobs have no index: pruning walks the rows in number order up to the first one
  // created at the cutoff or later (found by bisection: numbers grow with creation time), not the
  // whole table; a clock set back stops it early (pruning less, never more: each row is checked).
  const pruneOld = prepareLater(db, "DELETE FROM jobs WHERE n < ? AND queue = ? AND state = 'completed' AND updated_at < ?")
  const rowFrom = prepareLater<[number], { n: number; created_at: number }>(db, 'SELECT n, created_at FROM jobs WHERE n >= ? ORDER BY n LIMIT 1')
  /** The number of the first row created at `ms` or later (one past the last row if none). */
  const firstRowAt = (ms: number): number => {
    let lo = 0
    let hi = (lastRow.get() ?? 0) + 1
    while (lo < hi) {
      const mid = Math.floor((lo + hi) / 2)
      const r = rowFrom.get(mid)
      if (r === undefined || r.created_at >= ms) hi = mid
      else lo = r.n + 1
    }
    return lo
  }
  const pausedOf = db.prepare<[string], { paused: number }>('SELECT paused FROM queues WHERE queue = ?')
  const setPause = prepareLater(db, 'INSERT INTO queues (queue, paused) VALUES (?, ?) ON CONFLICT (queue) DO UPDATE SET paused = excluded.paused')
  const names = prepareLater<[], { queue: string }>(db, 'SELECT DISTINCT queue FROM jobs UNION SELECT queue FROM queues ORDER BY 1')
  // Each count walks one partial index (no scan of the whole table); completed jobs are counted in `queues`.
  const countReady = prepareLater<[number, number, number, string], { ready: number; delayed: number; oldest: number | null }>(
    db,
    "SELECT SUM(run_at <= ?) AS ready, SUM(run_at > ?) AS delayed, MIN(CASE WHEN run_at <= ? THEN run_at END) AS oldest FROM jobs WHERE queue = ? AND state = 'ready'",
  )
  const countLeased = prepareLater<[string], number>(db, "SELECT COUNT(*) FROM jobs WHERE queue = ? AND state = 'leased'", (st) => st.pluck(true))
  const countDead = prepareLater<[string], number>(db, "SELECT COUNT(*) FROM jobs WHERE queue = ? AND state = 'dead'", (st) => st.pluck(true))
  // The ready index is in run order (priority first), so MIN(run_at) over it would read every
  // ready job. Instead: the earliest run_at of each priority present, found by walking the
  // distinct priorities (a few index seeks each, however many jobs wait).
  const dueReady = db.prepare<[{ queue: string }], { at: number | null }>(
    `WITH RECURSIVE p(pr) AS (
       SELECT MAX(priority) FROM jobs WHERE queue = @queue AND state = 'ready'
       UNION ALL
       SELECT (SELECT MAX(priority) FROM jobs WHERE queue = @queue AND state = 'ready' AND priority < p.pr) FROM p WHERE p.pr IS NOT NULL
     )
     SELECT MIN((SELECT run_at FROM jobs WHERE queue = @queue AND state = 'ready' AND priority = p.pr ORDER BY run_at LIMIT 1)) AS at FROM p WHERE p.pr IS NOT NULL`,
  )
  const dueLease = db.prepare<[string], { at: number | null }>("SELECT MIN(lease_until) AS at FROM jobs WHERE queue = ? AND state = 'leased'")

  const enqueueOne = (input: EnqueueInput, now: number): { job: Job; created: boolean } => {
    if (input.idempotencyKey !== undefined) {
      const existing = byKey.get(input.queue, input.idempotencyKey)
      if (existing !== undefined) return { job: toJob(existing), created: false }
    }
    const invalid = input.invalid !== undefined
    const payload = blob(input.payload)
    let id: string
    for (;;) {
      const n = nextRow++
      id = numbered.make(now, n)
      try {
        insert.run(
          n, id, input.queue, invalid ? 'dead' : 'ready', payload, input.priority ?? 0, input.runAt ?? now,
          input.idempotencyKey ?? null, input.correlationId ?? null, input.traceparent ?? null,
          invalid ? input.invalid : null, invalid ? 'VALIDATION_FAILED' : null, invalid ? 'invalid' : null, now, now,
        )
        break
      } catch (err) {
        // Another writer on this file took the number: read the last one again.
        if ((err as { code?: string }).code !== 'SQLITE_CONSTRAINT_PRIMARYKEY') throw err
        nextRow = (lastRow.get() ?? 0) + 1
      }
    }
    const job: Job = {
      id, queue: input.queue, state: invalid ? 'dead' : 'ready', payload: input.payload, priority: input.priority ?? 0,
      runAt: input.runAt ?? now, attempt: 0, createdAt: now, updatedAt: now,
    }
    if (input.idempotencyKey !== undefined) job.idempotencyKey = input.idempotencyKey
    if (input.correlationId !== undefined) job.correlationId = input.correlationId
    if (input.traceparent !== undefined) job.traceparent = input.traceparent
    if (invalid) Object.assign(job, { error: input.invalid, errorCode: 'VALIDATION_FAILED', deadReason: 'invalid' })
    return { job, created: true }
  }

  // Expired leases are looked for when ready jobs run short, and at least once a second: then up
  // to 16 beyond the limit, so a job whose process died is not left behind a queue that never runs
  // short (it was); the sort still runs a ready job of higher priority first.
  const EXPIRED_EVERY_MS = 1_000
  const expiredCheckedAt = new Map<string, number>()
  const lease = (queue: string, limit: number, now: number, leaseMs: number): Job[] => {
    if (limit <= 0 || pausedOf.get(queue)?.paused === 1) return []
    const until = now + leaseMs
    let rows = takeReady.all(until, now, queue, now, limit)
    if (rows.length < limit || now - (expiredCheckedAt.get(queue) ?? -Infinity) >= EXPIRED_EVERY_MS) {
      expiredCheckedAt.set(queue, now)
      const expired = takeExpired.all(until, now, queue, now, Math.max(limit - rows.length, Math.min(limit, 16)))
      if (expired.length > 0) rows = rows.concat(expired)
    }
    if (rows.length > 1) rows.sort(leasedOrder)
    const jobs = new Array<Job>(rows.length)
    if (heldLeases.size + rows.length > HELD_LEASES_MAX) heldLeases.clear()
    for (let i = 0; i < rows.length; i++) {
      jobs[i] = leasedJob(rows[i]!, queue, until, now)
      heldLeases.set(rows[i]![0], { queue, n: rows[i]![12] })
    }
    return jobs
  }

  const tx = database.transaction
  const steps = createQueueClockSteps(db, tx)

  // Completions inside a transaction are counted in one statement per queue just before it
  // commits (a group commit settles hundreds); a rolled-back savepoint takes its own back. Once
  // written, counts are undone by SQLite, so a rollback takes back only those gathered since.
  const completions = new Map<string, number>()
  let written = 0
  const writeCompletions = (): void => {
    written++
    for (const [queue, n] of completions) if (n !== 0) countCompleted.run(queue, n)
    completions.clear()
  }
  // What is gathered is written before any savepoint opens, so the completions gathered are always
  // of the innermost level (and of inner levels released into it): the first one registers the
  // write and one undo for them all, and a rollback that finds none written since takes them all back.
  const completedLater = (queue: string): void => {
    if (completions.size === 0) {
      database.beforeCommit(writeCompletions)
      const gathered = written
      database.onRollback(() => {
        if (gathered === written) completions.clear()
      })
    }
    completions.set(queue, (completions.get(queue) ?? 0) + 1)
  }

  const completeNow = (id: string, attempt: number, output: unknown, now: number): boolean => {
    const held = heldLeases.get(id)
    let queue: string | undefined
    if (held === undefined) queue = finishReturningQueue.get(blob(output), now, rowOf(id), id, attempt)
    else {
      heldLeases.delete(id)
      if (finish.run(blob(output), now, held.n, id, attempt).changes === 1) queue = held.queue
    }
    if (queue === undefined) return false
    completedLater(queue)
    return true
  }

  const store: QueueStore = {
    enqueue: (input, now) => (db.inTransaction ? enqueueOne(input, now) : tx(() => enqueueOne(input, now))),
    enqueueMany: (inputs, now) => tx(() => inputs.map((i) => enqueueOne(i, now))),
    lease: (queue, limit, now, leaseMs) => (db.inTransaction ? lease(queue, limit, now, leaseMs) : tx(() => lease(queue, limit, now, leaseMs))),
    heartbeat: (id, attempt, now, leaseMs, progress) => extend.run(now + leaseMs, now, progress === undefined ? null : blob(progress), heldLeases.get(id)?.n ?? rowOf(id), id, attempt, now).changes === 1,
    // The count is written before the device database's own commit: a completion inside any other
    // transaction runs in one of its own (a savepoint there).
    complete: (id, attempt, output, now) => (database.inTransaction ? completeNow(id, attempt, output, now) : tx(() => completeNow(id, attempt, output, now))),
    retry: (id, attempt, runAt, error, now, info) => again.run(runAt, error, info?.code ?? null, now, leaseEnds(id), id, attempt).changes === 1,
    release: (id, attempt, now) => giveBack.run(now, now, leaseEnds(id), id, attempt).changes === 1,
    moveToDead: (id, attempt, error, now, info) => bury.run(error, info?.code ?? null, info?.reason ?? 'failed', now, leaseEnds(id), id, attempt).changes === 1,
    cancel(id, now) {
      const n = leaseEnds(id)
      cancelOne.run(now, n, id)
      const r = byId.get(n, id)
      return r === undefined ? undefined : toJob(r)
    },
    get: (id) => {
      const r = byId.get(rowOf(id), id)
      return r === undefined ? undefined : toJob(r)
    },
    listDead: (queue, limit) => dead.all(queue, limit).map(toJob),
    redrive: (queue, now, only) => {
      if (only === undefined) return redriveAll.run(now, now, queue).changes
      return tx(() => only.reduce((n, id) => n + redriveOne.run(now, now, rowOf(id), id, queue).changes, 0))
    },
    purge: (queue, state) =>
      tx(() => {
        const st = purgeState[state]
        if (st === undefined) return 0
        const n = st.run(queue).changes
        if (state === 'completed' && n > 0) countCompleted.run(queue, -n)
        return n
      }),
    pruneCompleted: (queue, before) =>
      tx(() => {
        const n = pruneOld.run(firstRowAt(before), queue, before).changes
        if (n > 0) countCompleted.run(queue, -n)
        if (legacy && n > 0) {
          forgetLegacy.run()
          legacy = anyLegacy.get() === 1
        }
        return n
      }),
    setPaused: (queue, paused) => void setPause.run(queue, paused ? 1 : 0),
    isPaused: (queue) => pausedOf.get(queue)?.paused === 1,
    queues: () => names.all().map((r) => r.queue),
    metrics(queue, now): QueueMetrics {
      const r = countReady.get(now, now, now, queue)!
      return {
        ready: r.ready ?? 0, delayed: r.delayed ?? 0, leased: countLeased.get(queue)!, completed: completedOf.get(queue) ?? 0, dead: countDead.get(queue)!,
        oldestReadyAgeMs: r.oldest === null ? 0 : Math.max(0, now - r.oldest),
      }
    },
    nextDueAt(queue) {
      const a = dueReady.get({ queue })?.at ?? undefined
      const b = dueLease.get(queue)?.at ?? undefined
      return a === undefined ? b : b === undefined ? a : Math.min(a, b)
    },
    // Once per clock step, and at start (runtime/stores/sqlite/queue-clock-steps.ts).
    clockStepped: (queue, step, now) => {
      expiredCheckedAt.delete(queue)
      return steps.clockStepped(queue, step, now)
    },
    rebaseAhead: steps.rebaseAhead,
    // The database's device transaction: the outbox on the same database takes the same one.
    transaction: database.deviceTransaction,
  }
  // Statements run on their own (outside a transaction, whose errors the device database
  // translates) leave with storage error codes too; the hot ones run inside transactions.
  const file = database.path
  return Object.assign(store, {
    heartbeat: guardStore(file, store.heartbeat),
    retry: guardStore(file, store.retry),
    release: guardStore(file, store.release),
    moveToDead: guardStore(file, store.moveToDead),
    cancel: guardStore(file, store.cancel),
    get: guardStore(file, store.get),
    listDead: guardStore(file, store.listDead),
    redrive: guardStore(file, store.redrive),
    setPaused: guardStore(file, store.setPaused),
    isPaused: guardStore(file, store.isPaused),
    queues: guardStore(file, store.queues),
    metrics: guardStore(file, store.metrics),
    nextDueAt: guardStore(file, store.nextDueAt),
    clockStepped: guardStore(file, store.clockStepped),
    rebaseAhead: guardStore(file, store.rebaseAhead),
  })
}
