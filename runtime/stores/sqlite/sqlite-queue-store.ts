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
}

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
    if (r.output !== null) job.output = value(r.output)
    if (r.error !== null) job.error = r.error
    if (r.progress !== null) job.progress = value(r.progress)
    return job
  }

  const byId = db.prepare<[string], Row>('SELECT * FROM jobs WHERE id = ?')
  const byKey = db.prepare<[string, string], Row>('SELECT * FROM jobs WHERE queue = ? AND idem_key = ?')
  const insert = db.prepare(
    "INSERT INTO jobs (id, queue, state, payload, priority, run_at, attempt, idem_key, created_at, updated_at) VALUES (?, ?, 'ready', ?, ?, ?, 0, ?, ?, ?)",
  )
  const leasable = db.prepare<[string, number, number, number], { id: string }>(
    `SELECT id FROM jobs WHERE queue = ? AND ((state = 'ready' AND run_at <= ?) OR (state = 'leased' AND lease_until <= ?))
     ORDER BY priority DESC, run_at, created_at LIMIT ?`,
  )
  const take = db.prepare("UPDATE jobs SET state = 'leased', attempt = attempt + 1, lease_until = ?, updated_at = ? WHERE id = ?")
  const extend = db.prepare("UPDATE jobs SET lease_until = ?, updated_at = ?, progress = COALESCE(?, progress) WHERE id = ? AND attempt = ? AND state = 'leased' AND lease_until > ?")
  const finish = db.prepare("UPDATE jobs SET state = 'completed', output = ?, lease_until = NULL, updated_at = ? WHERE id = ? AND attempt = ? AND state = 'leased'")
  const again = db.prepare("UPDATE jobs SET state = 'ready', run_at = ?, error = ?, lease_until = NULL, updated_at = ? WHERE id = ? AND attempt = ? AND state = 'leased'")
  const giveBack = db.prepare("UPDATE jobs SET state = 'ready', attempt = attempt - 1, run_at = ?, lease_until = NULL, updated_at = ? WHERE id = ? AND attempt = ? AND state = 'leased'")
  const bury = db.prepare("UPDATE jobs SET state = 'dead', error = ?, lease_until = NULL, updated_at = ? WHERE id = ? AND attempt = ? AND state = 'leased'")
  const dead = db.prepare<[string, number], Row>("SELECT * FROM jobs WHERE queue = ? AND state = 'dead' ORDER BY updated_at, id LIMIT ?")
  const redriveAll = db.prepare("UPDATE jobs SET state = 'ready', attempt = 0, run_at = ?, error = NULL, updated_at = ? WHERE queue = ? AND state = 'dead'")
  const redriveOne = db.prepare("UPDATE jobs SET state = 'ready', attempt = 0, run_at = ?, error = NULL, updated_at = ? WHERE queue = ? AND state = 'dead' AND id = ?")
  const purgeState = db.prepare('DELETE FROM jobs WHERE queue = ? AND state = ?')
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

  const enqueue = db.transaction((input: EnqueueInput, now: number): { job: Job; created: boolean } => {
    if (input.idempotencyKey !== undefined) {
      const existing = byKey.get(input.queue, input.idempotencyKey)
      if (existing !== undefined) return { job: toJob(existing), created: false }
    }
    const id = ids()
    insert.run(id, input.queue, blob(input.payload), input.priority ?? 0, input.runAt ?? now, input.idempotencyKey ?? null, now, now)
    return { job: toJob(byId.get(id)!), created: true }
  })

  const lease = db.transaction((queue: string, limit: number, now: number, leaseMs: number): Job[] => {
    const picked = leasable.all(queue, now, now, limit)
    for (const p of picked) take.run(now + leaseMs, now, p.id)
    return picked.map((p) => toJob(byId.get(p.id)!))
  })

  return {
    enqueue: (input, now) => enqueue(input, now),
    lease: (queue, limit, now, leaseMs) => lease(queue, limit, now, leaseMs),
    heartbeat: (id, attempt, now, leaseMs, progress) => extend.run(now + leaseMs, now, progress === undefined ? null : blob(progress), id, attempt, now).changes === 1,
    complete: (id, attempt, output, now) => finish.run(blob(output), now, id, attempt).changes === 1,
    retry: (id, attempt, runAt, error, now) => again.run(runAt, error, now, id, attempt).changes === 1,
    release: (id, attempt, now) => giveBack.run(now, now, id, attempt).changes === 1,
    moveToDead: (id, attempt, reason, now) => bury.run(reason, now, id, attempt).changes === 1,
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
    metrics(queue, now): QueueMetrics {
      const c = counts.get(now, now, now, queue)!
      return {
        ready: c.ready ?? 0, delayed: c.delayed ?? 0, leased: c.leased ?? 0, completed: c.completed ?? 0, dead: c.dead ?? 0,
        oldestReadyAgeMs: c.oldest === null ? 0 : Math.max(0, now - c.oldest),
      }
    },
    nextDueAt: (queue) => due.get(queue)?.at ?? undefined,
  }
}
