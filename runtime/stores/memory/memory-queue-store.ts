import type { DeviceTransaction } from '../../ports/device-transaction.js'
import type { EnqueueInput, Job, QueueMetrics, QueueStore } from '../../ports/queue-store.js'
import { createMessageIdFactory } from '../../wire/message-id.js'
import { createMemoryTransaction } from './memory-transaction.js'

/** Order in which jobs run: higher priority, then earlier due, then older. */
const runOrder = (a: Job, b: Job): number => b.priority - a.priority || a.runAt - b.runAt || a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1)

/**
 * Creates a queue store in memory: the same semantics as the SQLite one, gone with the
 * process (tests, or a device that keeps no jobs across restarts). Jobs are copied in and out,
 * so callers never hold the store's own objects. `transaction`: the device transaction it shares
 * with a memory outbox (default: its own; nothing in memory is ever half-written, so it only runs
 * the work).
 */
export function createMemoryQueueStore(opts: { transaction?: DeviceTransaction } = {}): QueueStore {
  const jobs = new Map<string, Job>()
  const byKey = new Map<string, string>() // queue \0 key → id
  const paused = new Set<string>()
  const known = new Set<string>()
  const ids = createMessageIdFactory()
  const copy = (j: Job): Job => structuredClone(j)
  const ofQueue = (queue: string): Job[] => [...jobs.values()].filter((j) => j.queue === queue)
  /** The job under a current lease, if (id, attempt) is one. */
  const current = (id: string, attempt: number): Job | undefined => {
    const j = jobs.get(id)
    return j !== undefined && j.state === 'leased' && j.attempt === attempt ? j : undefined
  }

  const enqueue = (input: EnqueueInput, now: number): { job: Job; created: boolean } => {
    const k = input.idempotencyKey === undefined ? undefined : `${input.queue}\0${input.idempotencyKey}`
    const existing = k === undefined ? undefined : byKey.get(k)
    if (existing !== undefined) return { job: copy(jobs.get(existing)!), created: false }
    const job: Job = {
      id: ids(), queue: input.queue, state: 'ready', payload: structuredClone(input.payload), priority: input.priority ?? 0,
      runAt: input.runAt ?? now, attempt: 0, createdAt: now, updatedAt: now,
    }
    if (input.idempotencyKey !== undefined) job.idempotencyKey = input.idempotencyKey
    if (input.correlationId !== undefined) job.correlationId = input.correlationId
    if (input.traceparent !== undefined) job.traceparent = input.traceparent
    if (input.invalid !== undefined) Object.assign(job, { state: 'dead', error: input.invalid, errorCode: 'VALIDATION_FAILED', deadReason: 'invalid' })
    jobs.set(job.id, job)
    known.add(job.queue)
    if (k !== undefined) byKey.set(k, job.id)
    return { job: copy(job), created: true }
  }

  const forget = (j: Job): void => {
    jobs.delete(j.id)
    if (j.idempotencyKey !== undefined) byKey.delete(`${j.queue}\0${j.idempotencyKey}`)
  }

  return {
    enqueue,
    enqueueMany: (inputs, now) => inputs.map((i) => enqueue(i, now)),
    lease(queue, limit, now, leaseMs) {
      if (limit <= 0 || paused.has(queue)) return []
      const picked = ofQueue(queue)
        .filter((j) => (j.state === 'ready' && j.runAt <= now) || (j.state === 'leased' && j.leaseUntil! <= now))
        .sort(runOrder)
        .slice(0, limit)
      return picked.map((j) => {
        Object.assign(j, { state: 'leased', attempt: j.attempt + 1, leaseUntil: now + leaseMs, updatedAt: now })
        return copy(j)
      })
    },
    heartbeat(id, attempt, now, leaseMs, progress) {
      const j = current(id, attempt)
      if (j === undefined || j.leaseUntil! <= now) return false
      j.leaseUntil = now + leaseMs
      j.updatedAt = now
      if (progress !== undefined) j.progress = structuredClone(progress)
      return true
    },
    complete(id, attempt, output, now) {
      const j = current(id, attempt)
      if (j === undefined) return false
      Object.assign(j, { state: 'completed', output: structuredClone(output), updatedAt: now })
      delete j.leaseUntil
      return true
    },
    retry(id, attempt, runAt, error, now, info) {
      const j = current(id, attempt)
      if (j === undefined) return false
      Object.assign(j, { state: 'ready', runAt, error, updatedAt: now })
      if (info?.code !== undefined) j.errorCode = info.code
      delete j.leaseUntil
      return true
    },
    release(id, attempt, now) {
      const j = current(id, attempt)
      if (j === undefined) return false
      Object.assign(j, { state: 'ready', attempt: j.attempt - 1, runAt: Math.min(j.runAt, now), updatedAt: now })
      delete j.leaseUntil
      return true
    },
    moveToDead(id, attempt, error, now, info) {
      const j = current(id, attempt)
      if (j === undefined) return false
      Object.assign(j, { state: 'dead', error, deadReason: info?.reason ?? 'failed', updatedAt: now })
      if (info?.code !== undefined) j.errorCode = info.code
      delete j.leaseUntil
      return true
    },
    cancel(id, now) {
      const j = jobs.get(id)
      if (j === undefined) return undefined
      if (j.state === 'ready' || j.state === 'leased') {
        Object.assign(j, { state: 'dead', error: 'cancelled', errorCode: 'CANCELLED', deadReason: 'cancelled', updatedAt: now })
        delete j.leaseUntil
      }
      return copy(j)
    },
    get: (id) => {
      const j = jobs.get(id)
      return j === undefined ? undefined : copy(j)
    },
    listDead: (queue, limit) =>
      ofQueue(queue)
        .filter((j) => j.state === 'dead')
        .sort((a, b) => a.updatedAt - b.updatedAt || (a.id < b.id ? -1 : 1))
        .slice(0, limit)
        .map(copy),
    redrive(queue, now, only) {
      let n = 0
      for (const j of ofQueue(queue)) {
        if (j.state !== 'dead' || (only !== undefined && !only.includes(j.id))) continue
        Object.assign(j, { state: 'ready', attempt: 0, runAt: now, updatedAt: now })
        delete j.error
        delete j.errorCode
        delete j.deadReason
        n++
      }
      return n
    },
    purge(queue, state) {
      const gone = ofQueue(queue).filter((j) => j.state === state)
      gone.forEach(forget)
      return gone.length
    },
    pruneCompleted(queue, before) {
      const gone = ofQueue(queue).filter((j) => j.state === 'completed' && j.updatedAt < before)
      gone.forEach(forget)
      return gone.length
    },
    setPaused(queue, on) {
      known.add(queue)
      if (on) paused.add(queue)
      else paused.delete(queue)
    },
    isPaused: (queue) => paused.has(queue),
    queues: () => [...known].sort(),
    metrics(queue, now): QueueMetrics {
      const m: QueueMetrics = { ready: 0, delayed: 0, leased: 0, completed: 0, dead: 0, oldestReadyAgeMs: 0 }
      for (const j of ofQueue(queue)) {
        if (j.state === 'ready') {
          if (j.runAt > now) m.delayed++
          else {
            m.ready++
            m.oldestReadyAgeMs = Math.max(m.oldestReadyAgeMs, now - j.runAt)
          }
        } else m[j.state]++
      }
      return m
    },
    nextDueAt(queue) {
      let at: number | undefined
      for (const j of ofQueue(queue)) {
        const t = j.state === 'ready' ? j.runAt : j.state === 'leased' ? j.leaseUntil! : undefined
        if (t !== undefined && (at === undefined || t < at)) at = t
      }
      return at
    },
    clockStepped(queue, step, now) {
      const before = now - step
      const low = Math.min(now, before)
      let n = 0
      for (const j of ofQueue(queue)) {
        if ((j.state !== 'ready' && j.state !== 'leased') || j.updatedAt > before) continue
        if (j.state === 'ready' && j.runAt > low) j.runAt += step
        if (j.state === 'leased') j.leaseUntil! += step
        j.createdAt += step
        j.updatedAt += step
        n++
      }
      return n
    },
    rebaseAhead(queue, now) {
      let n = 0
      for (const j of ofQueue(queue)) {
        if ((j.state !== 'ready' && j.state !== 'leased') || j.updatedAt <= now) continue
        if (j.state === 'ready') j.runAt = now + Math.max(0, j.runAt - j.updatedAt)
        else j.leaseUntil = now + Math.max(0, j.leaseUntil! - j.updatedAt)
        j.createdAt = now - Math.max(0, j.updatedAt - j.createdAt)
        j.updatedAt = now
        n++
      }
      return n
    },
    transaction: opts.transaction ?? createMemoryTransaction(),
  }
}
