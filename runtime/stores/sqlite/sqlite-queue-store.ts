import { Decoder, Encoder } from 'cbor-x'
import type { EnqueueInput, Job, JobState, QueueMetrics, QueueStore } from '../../ports/queue-store.js'
import { createMessageIdFactory } from '../../wire/message-id.js'
import type { DeviceDatabase } from './device-database.js'

interface Row {
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

/** Order in which jobs run: higher priority, then earlier due, then older. */
const runOrder = (a: Row, b: Row): number => b.priority - a.priority || a.run_at - b.run_at || a.created_at - b.created_at || (a.id < b.id ? -1 : 1)

/** Creates the durable queue store in the device database (payloads and outputs as CBOR). */
export function createSqliteQueueStore(database: DeviceDatabase): QueueStore {
  const db = database.db
  const encoder = new Encoder({ useRecords: false, mapsAsObjects: true })
  const decoder = new Decoder({ useRecords: false, mapsAsObjects: true })
  const ids = createMessageIdFactory()
  const blob = (v: unknown): Buffer => encoder.encode(v === undefined ? null : v)
  const value = (b: Buffer | null): unknown => (b === null ? undefined : (decoder.decode(b) ?? undefined))
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

  const byId = db.prepare<[string], Row>('SELECT * FROM jobs WHERE id = ?')
  const byKey = db.prepare<[string, string], Row>('SELECT * FROM jobs WHERE queue = ? AND idem_key = ?')
  const insert = db.prepare(
    `INSERT INTO jobs (id, queue, state, payload, priority, run_at, attempt, idem_key, corr, traceparent, error, error_code, dead_reason, created_at, updated_at)
     VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?)`,
  )
  // Two index walks instead of one OR: ready jobs come in index order, expired leases are few.
  const readyJobs = db.prepare<[string, number, number], Row>(
    "SELECT * FROM jobs WHERE queue = ? AND state = 'ready' AND run_at <= ? ORDER BY priority DESC, run_at, created_at LIMIT ?",
  )
  const expiredJobs = db.prepare<[string, number, number], Row>(
    "SELECT * FROM jobs WHERE queue = ? AND state = 'leased' AND lease_until <= ? ORDER BY lease_until LIMIT ?",
  )
  const take = db.prepare("UPDATE jobs SET state = 'leased', attempt = attempt + 1, lease_until = ?, updated_at = ? WHERE id = ?")
  const extend = db.prepare("UPDATE jobs SET lease_until = ?, updated_at = ?, progress = COALESCE(?, progress) WHERE id = ? AND attempt = ? AND state = 'leased' AND lease_until > ?")
  const finish = db.prepare("UPDATE jobs SET state = 'completed', output = ?, lease_until = NULL, updated_at = ? WHERE id = ? AND attempt = ? AND state = 'leased'")
  const again = db.prepare("UPDATE jobs SET state = 'ready', run_at = ?, error = ?, error_code = ?, lease_until = NULL, updated_at = ? WHERE id = ? AND attempt = ? AND state = 'leased'")
  const giveBack = db.prepare("UPDATE jobs SET state = 'ready', attempt = attempt - 1, run_at = ?, lease_until = NULL, updated_at = ? WHERE id = ? AND attempt = ? AND state = 'leased'")
  const bury = db.prepare("UPDATE jobs SET state = 'dead', error = ?, error_code = ?, dead_reason = ?, lease_until = NULL, updated_at = ? WHERE id = ? AND attempt = ? AND state = 'leased'")
  const cancelOne = db.prepare(
    "UPDATE jobs SET state = 'dead', error = 'cancelled', error_code = 'CANCELLED', dead_reason = 'cancelled', lease_until = NULL, updated_at = ? WHERE id = ? AND state IN ('ready', 'leased')",
  )
  const dead = db.prepare<[string, number], Row>("SELECT * FROM jobs WHERE queue = ? AND state = 'dead' ORDER BY updated_at, id LIMIT ?")
  const redriveAll = db.prepare("UPDATE jobs SET state = 'ready', attempt = 0, run_at = ?, error = NULL, error_code = NULL, dead_reason = NULL, updated_at = ? WHERE queue = ? AND state = 'dead'")
  const redriveOne = db.prepare("UPDATE jobs SET state = 'ready', attempt = 0, run_at = ?, error = NULL, error_code = NULL, dead_reason = NULL, updated_at = ? WHERE queue = ? AND state = 'dead' AND id = ?")
  const purgeState = db.prepare('DELETE FROM jobs WHERE queue = ? AND state = ?')
  const pruneOld = db.prepare("DELETE FROM jobs WHERE queue = ? AND state = 'completed' AND updated_at < ?")
  const pausedOf = db.prepare<[string], { paused: number }>('SELECT paused FROM queues WHERE queue = ?')
  const setPause = db.prepare('INSERT INTO queues (queue, paused) VALUES (?, ?) ON CONFLICT (queue) DO UPDATE SET paused = excluded.paused')
  const names = db.prepare<[], { queue: string }>('SELECT DISTINCT queue FROM jobs UNION SELECT queue FROM queues ORDER BY 1')
  const counts = db.prepare<[number, number, number, string], { ready: number; delayed: number; leased: number; completed: number; dead: number; oldest: number | null }>(
    `SELECT
       SUM(state = 'ready' AND run_at <= ?) AS ready,
       SUM(state = 'ready' AND run_at > ?) AS delayed,
       SUM(state = 'leased') AS leased,
       SUM(state = 'completed') AS completed,
       SUM(state = 'dead') AS dead,
       MIN(CASE WHEN state = 'ready' AND run_at <= ? THEN run_at END) AS oldest
     FROM jobs WHERE queue = ?`,
  )
  const due = db.prepare<[string], { at: number | null }>(
    "SELECT MIN(CASE WHEN state = 'ready' THEN run_at WHEN state = 'leased' THEN lease_until END) AS at FROM jobs WHERE queue = ? AND state IN ('ready', 'leased')",
  )

  const enqueueOne = (input: EnqueueInput, now: number): { job: Job; created: boolean } => {
    if (input.idempotencyKey !== undefined) {
      const existing = byKey.get(input.queue, input.idempotencyKey)
      if (existing !== undefined) return { job: toJob(existing), created: false }
    }
    const id = ids()
    const invalid = input.invalid !== undefined
    insert.run(
      id, input.queue, invalid ? 'dead' : 'ready', blob(input.payload), input.priority ?? 0, input.runAt ?? now,
      input.idempotencyKey ?? null, input.correlationId ?? null, input.traceparent ?? null,
      invalid ? input.invalid : null, invalid ? 'VALIDATION_FAILED' : null, invalid ? 'invalid' : null, now, now,
    )
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

  const lease = (queue: string, limit: number, now: number, leaseMs: number): Job[] => {
    if (limit <= 0 || pausedOf.get(queue)?.paused === 1) return []
    const rows = expiredJobs.all(queue, now, limit)
    const ready = readyJobs.all(queue, now, limit)
    const picked = rows.length === 0 ? ready : rows.concat(ready).sort(runOrder).slice(0, limit)
    const until = now + leaseMs
    return picked.map((r) => {
      take.run(until, now, r.id)
      const job = toJob(r)
      job.state = 'leased'
      job.attempt = r.attempt + 1
      job.leaseUntil = until
      job.updatedAt = now
      return job
    })
  }

  const tx = <A extends unknown[], T>(fn: (...a: A) => T): ((...a: A) => T) => db.transaction(fn)
  const enqueueTx = tx(enqueueOne)
  const enqueueManyTx = tx((inputs: EnqueueInput[], now: number) => inputs.map((i) => enqueueOne(i, now)))
  const leaseTx = tx(lease)

  return {
    enqueue: (input, now) => enqueueTx(input, now),
    enqueueMany: (inputs, now) => enqueueManyTx(inputs, now),
    lease: (queue, limit, now, leaseMs) => (db.inTransaction ? lease(queue, limit, now, leaseMs) : leaseTx(queue, limit, now, leaseMs)),
    heartbeat: (id, attempt, now, leaseMs, progress) => extend.run(now + leaseMs, now, progress === undefined ? null : blob(progress), id, attempt, now).changes === 1,
    complete: (id, attempt, output, now) => finish.run(blob(output), now, id, attempt).changes === 1,
    retry: (id, attempt, runAt, error, now, info) => again.run(runAt, error, info?.code ?? null, now, id, attempt).changes === 1,
    release: (id, attempt, now) => giveBack.run(now, now, id, attempt).changes === 1,
    moveToDead: (id, attempt, error, now, info) => bury.run(error, info?.code ?? null, info?.reason ?? 'failed', now, id, attempt).changes === 1,
    cancel(id, now) {
      cancelOne.run(now, id)
      const r = byId.get(id)
      return r === undefined ? undefined : toJob(r)
    },
    get: (id) => {
      const r = byId.get(id)
      return r === undefined ? undefined : toJob(r)
    },
    listDead: (queue, limit) => dead.all(queue, limit).map(toJob),
    redrive: (queue, now, only) => {
      if (only === undefined) return redriveAll.run(now, now, queue).changes
      return db.transaction(() => only.reduce((n, id) => n + redriveOne.run(now, now, queue, id).changes, 0))()
    },
    purge: (queue, state) => purgeState.run(queue, state).changes,
    pruneCompleted: (queue, before) => pruneOld.run(queue, before).changes,
    setPaused: (queue, paused) => void setPause.run(queue, paused ? 1 : 0),
    isPaused: (queue) => pausedOf.get(queue)?.paused === 1,
    queues: () => names.all().map((r) => r.queue),
    metrics(queue, now): QueueMetrics {
      const c = counts.get(now, now, now, queue)!
      return {
        ready: c.ready ?? 0, delayed: c.delayed ?? 0, leased: c.leased ?? 0, completed: c.completed ?? 0, dead: c.dead ?? 0,
        oldestReadyAgeMs: c.oldest === null ? 0 : Math.max(0, now - c.oldest),
      }
    },
    nextDueAt: (queue) => due.get(queue)?.at ?? undefined,
    transaction: (fn) => db.transaction(fn)(),
  }
}
