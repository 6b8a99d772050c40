import { describe, expect } from 'vitest'
import { contractTest } from './contract-kit.js'
import type { Job, QueueStore } from '../../runtime/index.js'

export interface QueueStoreContractOptions {
  create(): { store: QueueStore; reopen?: () => QueueStore; dispose(): void }
  /** Keeps what it holds across a reopen, and rolls back a failed `transaction.run`. */
  durable: boolean
}

const T0 = 1_732_350_000_000
const LEASE = 30_000

/** What every queue store does; time is passed in, nothing waits. */
export function describeQueueStoreContract(name: string, opts: QueueStoreContractOptions): void {
  const declare = contractTest<ReturnType<QueueStoreContractOptions['create']>>()
  const test = (title: string, fn: (o: ReturnType<QueueStoreContractOptions['create']>) => void): void => declare(title, opts.create, fn)

  describe(`QueueStore contract: ${name}`, () => {
    test('leases a ready job, counting the attempt, and records its completion', ({ store }) => {
      const { job, created } = store.enqueue({ queue: 'q', payload: { photo: 7 } }, T0)
      expect(created).toBe(true)
      expect(job).toMatchObject({ queue: 'q', state: 'ready', attempt: 0, payload: { photo: 7 }, runAt: T0 })
      const [leased] = store.lease('q', 10, T0 + 1, LEASE)
      expect(leased).toMatchObject({ id: job.id, state: 'leased', attempt: 1, leaseUntil: T0 + 1 + LEASE })
      expect(store.lease('q', 10, T0 + 2, LEASE)).toEqual([])
      expect(store.complete(job.id, 1, { ok: true }, T0 + 3)).toBe(true)
      expect(store.get(job.id)).toMatchObject({ state: 'completed', output: { ok: true } })
      expect(store.complete(job.id, 1, { ok: true }, T0 + 4)).toBe(false)
    })

    test('returns the existing job for a repeated idempotency key, per queue', ({ store }) => {
      const a = store.enqueue({ queue: 'q', payload: 1, idempotencyKey: 'k' }, T0)
      const b = store.enqueue({ queue: 'q', payload: 2, idempotencyKey: 'k' }, T0 + 1)
      const c = store.enqueue({ queue: 'other', payload: 3, idempotencyKey: 'k' }, T0 + 2)
      expect(b).toEqual({ job: a.job, created: false })
      expect(c.created).toBe(true)
      expect(store.metrics('q', T0 + 5).ready).toBe(1)
    })

    test('hands out higher priority first, then the earliest due, and holds delayed jobs back', ({ store }) => {
      const low = store.enqueue({ queue: 'q', payload: 'low' }, T0).job
      const high = store.enqueue({ queue: 'q', payload: 'high', priority: 5 }, T0 + 1).job
      const later = store.enqueue({ queue: 'q', payload: 'later', priority: 9, runAt: T0 + 60_000 }, T0 + 2).job
      const first = store.lease('q', 10, T0 + 10, LEASE)
      expect(first.map((j) => j.id)).toEqual([high.id, low.id])
      expect(store.metrics('q', T0 + 10)).toMatchObject({ delayed: 1, leased: 2 })
      expect(store.nextDueAt('q')).toBe(T0 + 10 + LEASE) // the leases run out before the delayed job is due
      for (const j of first) store.complete(j.id, j.attempt, null, T0 + 20)
      expect(store.nextDueAt('q')).toBe(T0 + 60_000)
      expect(store.lease('q', 10, T0 + 59_999, LEASE)).toEqual([])
      expect(store.lease('q', 10, T0 + 60_000, LEASE).map((j) => j.id)).toEqual([later.id])
    })

    test('tells when the earliest waiting job is due, whatever its priority', ({ store }) => {
      expect(store.nextDueAt('q')).toBeUndefined()
      store.enqueue({ queue: 'q', payload: 'urgent later', priority: 5, runAt: T0 + 100 }, T0)
      store.enqueue({ queue: 'q', payload: 'low soon', priority: -1, runAt: T0 + 50 }, T0)
      store.enqueue({ queue: 'q', payload: 'mid', priority: 2, runAt: T0 + 70 }, T0)
      store.enqueue({ queue: 'q', payload: 'mid later', priority: 2, runAt: T0 + 90 }, T0)
      store.enqueue({ queue: 'other', payload: 'elsewhere', runAt: T0 + 1 }, T0)
      expect(store.nextDueAt('q')).toBe(T0 + 50)
      expect(store.lease('q', 1, T0 + 50, LEASE).map((j) => j.payload)).toEqual(['low soon'])
      expect(store.nextDueAt('q')).toBe(T0 + 70)
    })

    test('offers a job again once its lease has expired, and ignores the old lease', ({ store }) => {
      const { job } = store.enqueue({ queue: 'q', payload: null }, T0)
      store.lease('q', 1, T0, LEASE)
      expect(store.lease('q', 1, T0 + LEASE - 1, LEASE)).toEqual([])
      const [again] = store.lease('q', 1, T0 + LEASE, LEASE)
      expect(again).toMatchObject({ id: job.id, attempt: 2 })
      expect(store.complete(job.id, 1, 'stale', T0 + LEASE + 1)).toBe(false)
      expect(store.heartbeat(job.id, 1, T0 + LEASE + 1, LEASE)).toBe(false)
      expect(store.complete(job.id, 2, 'fresh', T0 + LEASE + 2)).toBe(true)
    })

    test('extends a current lease on heartbeat and keeps the progress', ({ store }) => {
      const { job } = store.enqueue({ queue: 'q', payload: null }, T0)
      store.lease('q', 1, T0, LEASE)
      expect(store.heartbeat(job.id, 1, T0 + 20_000, LEASE, { pct: 40 })).toBe(true)
      expect(store.lease('q', 1, T0 + LEASE + 1, LEASE)).toEqual([]) // extended to T0 + 50 000
      expect(store.get(job.id)).toMatchObject({ leaseUntil: T0 + 20_000 + LEASE, progress: { pct: 40 } })
      expect(store.heartbeat(job.id, 1, T0 + 20_000 + LEASE, LEASE)).toBe(false) // too late: expired
    })

    test('takes a run-out lease again while ready jobs would fill every lease (a process that died, a busy queue)', ({ store }) => {
      const lost = store.enqueue({ queue: 'q', payload: 'lost' }, T0).job
      expect(store.lease('q', 1, T0, LEASE).map((j) => j.id)).toEqual([lost.id]) // its process dies
      for (let i = 0; i < 10; i++) store.enqueue({ queue: 'q', payload: i }, T0 + LEASE)
      // The lease ran out 2 s ago; the queue has more ready jobs than the limit.
      const [first, second] = store.lease('q', 2, T0 + LEASE + 2_000, LEASE)
      expect(first).toMatchObject({ id: lost.id, attempt: 2 })
      expect(second?.id).not.toBe(lost.id)
    })

    test('runs a ready job of higher priority before a run-out lease of lower priority', ({ store }) => {
      const low = store.enqueue({ queue: 'q', payload: 'low' }, T0).job
      store.lease('q', 1, T0, LEASE) // its process dies
      const high = store.enqueue({ queue: 'q', payload: 'high', priority: 5 }, T0 + LEASE)
      const leased = store.lease('q', 1, T0 + LEASE + 2_000, LEASE).map((j) => j.id)
      expect(leased[0]).toBe(high.job.id)
      // The run-out one is not left behind: taken now (after it) or at the next lease.
      if (leased.length === 1) expect(store.lease('q', 1, T0 + LEASE + 2_001, LEASE).map((j) => j.id)).toEqual([low.id])
      else expect(leased).toEqual([high.job.id, low.id])
    })

    test('retries later, gives a job back on release, and dead-letters with a reason', ({ store }) => {
      const a = store.enqueue({ queue: 'q', payload: 'a' }, T0).job
      const b = store.enqueue({ queue: 'q', payload: 'b' }, T0).job
      store.lease('q', 2, T0, LEASE)
      expect(store.retry(a.id, 1, T0 + 5_000, 'flaky sensor', T0 + 1)).toBe(true)
      expect(store.release(b.id, 1, T0 + 1)).toBe(true)
      // In its place: due when it was, ahead of a job enqueued since.
      expect(store.get(b.id)).toMatchObject({ state: 'ready', attempt: 0, runAt: T0 })
      const later = store.enqueue({ queue: 'q', payload: 'c' }, T0 + 1).job
      expect(store.lease('q', 5, T0 + 2, LEASE).map((j) => j.id)).toEqual([b.id, later.id])
      const [retried] = store.lease('q', 5, T0 + 5_000, LEASE)
      expect(retried).toMatchObject({ id: a.id, attempt: 2, error: 'flaky sensor' })
      expect(store.moveToDead(a.id, 2, 'gave up after 2 attempts', T0 + 5_001)).toBe(true)
      expect(store.listDead('q', 10)).toEqual([expect.objectContaining({ id: a.id, state: 'dead', error: 'gave up after 2 attempts' })])
    })

    test('redrives dead jobs with fresh attempts and purges by state', ({ store }) => {
      const ids = [1, 2, 3].map((n) => store.enqueue({ queue: 'q', payload: n }, T0).job.id)
      for (const j of store.lease('q', 3, T0, LEASE)) store.moveToDead(j.id, j.attempt, 'bad', T0 + 1)
      expect(store.redrive('q', T0 + 2, [ids[0]!])).toBe(1)
      expect(store.get(ids[0]!)).toMatchObject({ state: 'ready', attempt: 0 })
      expect(store.redrive('q', T0 + 3)).toBe(2)
      for (const j of store.lease('q', 3, T0 + 4, LEASE)) store.complete(j.id, j.attempt, null, T0 + 5)
      expect(store.metrics('q', T0 + 6)).toMatchObject({ completed: 3, ready: 0, dead: 0 })
      expect(store.purge('q', 'completed')).toBe(3)
      expect(store.get(ids[1]!)).toBeUndefined()
    })

    test('reports queue metrics with the age of the oldest ready job', ({ store }) => {
      store.enqueue({ queue: 'q', payload: 1 }, T0)
      store.enqueue({ queue: 'q', payload: 2 }, T0 + 1_000)
      store.enqueue({ queue: 'q', payload: 3, runAt: T0 + 99_000 }, T0)
      expect(store.metrics('q', T0 + 5_000)).toEqual({ ready: 2, delayed: 1, leased: 0, completed: 0, dead: 0, oldestReadyAgeMs: 5_000 })
      expect(store.metrics('empty', T0)).toEqual({ ready: 0, delayed: 0, leased: 0, completed: 0, dead: 0, oldestReadyAgeMs: 0 })
    })

    test('enqueues a batch in order and keeps correlation and trace ids', ({ store }) => {
      const out = store.enqueueMany(
        [
          { queue: 'q', payload: 1, correlationId: 'occ-1', traceparent: '00-aa-bb-01' },
          { queue: 'q', payload: 2, idempotencyKey: 'two' },
          { queue: 'q', payload: 3, idempotencyKey: 'two' },
        ],
        T0,
      )
      expect(out.map((o) => o.created)).toEqual([true, true, false])
      expect(out[2]!.job.id).toBe(out[1]!.job.id)
      expect(store.get(out[0]!.job.id)).toMatchObject({ correlationId: 'occ-1', traceparent: '00-aa-bb-01' })
      expect(store.lease('q', 5, T0, LEASE).map((j) => j.payload)).toEqual([1, 2])
    })

    test('stores input that can never run straight into the dead letters', ({ store }) => {
      const { job } = store.enqueue({ queue: 'q', payload: { bad: true }, invalid: 'payload.size: expected number' }, T0)
      expect(job).toMatchObject({ state: 'dead', deadReason: 'invalid', errorCode: 'VALIDATION_FAILED' })
      expect(store.lease('q', 5, T0, LEASE)).toEqual([])
      expect(store.listDead('q', 5)).toEqual([expect.objectContaining({ id: job.id, error: 'payload.size: expected number' })])
    })

    test('records failure codes and dead reasons', ({ store }) => {
      const { job } = store.enqueue({ queue: 'q', payload: null }, T0)
      store.lease('q', 1, T0, LEASE)
      expect(store.retry(job.id, 1, T0 + 10, 'sensor busy', T0 + 1, { code: 'BUSY' })).toBe(true)
      expect(store.get(job.id)).toMatchObject({ state: 'ready', errorCode: 'BUSY' })
      store.lease('q', 1, T0 + 10, LEASE)
      expect(store.moveToDead(job.id, 2, 'out of attempts', T0 + 11, { code: 'BUSY', reason: 'attempts' })).toBe(true)
      expect(store.get(job.id)).toMatchObject({ state: 'dead', error: 'out of attempts', errorCode: 'BUSY', deadReason: 'attempts' })
      expect(store.redrive('q', T0 + 12)).toBe(1)
      const back = store.get(job.id)!
      expect([back.state, back.deadReason, back.errorCode]).toEqual(['ready', undefined, undefined])
    })

    test('cancels a ready or leased job, leaving its lease stale', ({ store }) => {
      const a = store.enqueue({ queue: 'q', payload: 'a' }, T0).job
      const b = store.enqueue({ queue: 'q', payload: 'b' }, T0 + 1).job
      store.lease('q', 1, T0 + 2, LEASE)
      expect(store.cancel(a.id, T0 + 3)).toMatchObject({ state: 'dead', deadReason: 'cancelled' })
      expect(store.complete(a.id, 1, 'late', T0 + 4)).toBe(false)
      expect(store.cancel(b.id, T0 + 5)).toMatchObject({ state: 'dead', deadReason: 'cancelled' })
      expect(store.cancel('no-such-job', T0 + 6)).toBeUndefined()
      expect(store.metrics('q', T0 + 7)).toMatchObject({ ready: 0, leased: 0, dead: 2 })
    })

    test('hands out nothing from a paused queue until it is resumed', ({ store }) => {
      store.enqueue({ queue: 'q', payload: 1 }, T0)
      store.setPaused('q', true)
      expect(store.isPaused('q')).toBe(true)
      expect(store.lease('q', 5, T0, LEASE)).toEqual([])
      store.setPaused('q', false)
      expect(store.lease('q', 5, T0, LEASE)).toHaveLength(1)
      store.setPaused('idle', true)
      expect(store.queues()).toEqual(['idle', 'q'])
    })

    test('prunes completed jobs older than a time, freeing their idempotency keys', ({ store }) => {
      const old = store.enqueue({ queue: 'q', payload: 1, idempotencyKey: 'k1' }, T0).job
      store.enqueue({ queue: 'q', payload: 2 }, T0)
      const [j1, j2] = store.lease('q', 2, T0, LEASE)
      store.complete(j1!.id, 1, null, T0 + 1)
      store.complete(j2!.id, 1, null, T0 + 1_000)
      expect(store.pruneCompleted('q', T0 + 500)).toBe(1)
      expect(store.get(old.id)).toBeUndefined()
      expect(store.metrics('q', T0 + 2_000).completed).toBe(1)
      expect(store.enqueue({ queue: 'q', payload: 3, idempotencyKey: 'k1' }, T0 + 2_000).created).toBe(true)
    })

    test('prunes by when a job finished, not when it was made', ({ store }) => {
      const slow = store.enqueue({ queue: 'q', payload: 'slow' }, T0).job
      const quick = store.enqueue({ queue: 'q', payload: 'quick' }, T0 + 10).job
      const late = store.enqueue({ queue: 'q', payload: 'late' }, T0 + 5_000).job
      const other = store.enqueue({ queue: 'other', payload: 'other' }, T0).job
      const leased = [...store.lease('q', 3, T0 + 5_000, LEASE), ...store.lease('other', 1, T0 + 5_000, LEASE)]
      const done = (id: string, at: number): boolean => store.complete(id, leased.find((j) => j.id === id)!.attempt, null, at)
      done(quick.id, T0 + 20)
      done(slow.id, T0 + 9_000) // made before the cutoff, finished after it
      done(late.id, T0 + 5_001)
      done(other.id, T0 + 20)
      expect(store.pruneCompleted('q', T0 + 6_000)).toBe(2)
      expect([store.get(slow.id)?.state, store.get(quick.id), store.get(late.id), store.get(other.id)?.state]).toEqual(['completed', undefined, undefined, 'completed'])
      expect(store.metrics('q', T0 + 9_000).completed).toBe(1)
      expect(store.metrics('other', T0 + 9_000).completed).toBe(1)
      expect(store.pruneCompleted('q', T0 + 9_001)).toBe(1)
      expect(store.metrics('q', T0 + 9_001).completed).toBe(0)
    })

    test('finds a job by its exact id only', ({ store }) => {
      const job = store.enqueue({ queue: 'q', payload: 1 }, T0).job
      const other = store.enqueue({ queue: 'q', payload: 2 }, T0 + 1).job
      const [leased] = store.lease('q', 1, T0 + 2, LEASE)
      expect(leased!.id).toBe(job.id)
      // Same length and the same last characters, but another id: no job of this store.
      const forged = `${job.id[0] === 'Z' ? 'Y' : 'Z'}${job.id.slice(1)}`
      for (const id of [forged, job.id.slice(0, -1), `${job.id}0`, '', 'nope', other.id.toLowerCase()]) {
        expect(store.get(id)).toBeUndefined()
        expect(store.heartbeat(id, 1, T0 + 3, LEASE)).toBe(false)
        expect(store.complete(id, 1, null, T0 + 3)).toBe(false)
        expect(store.cancel(id, T0 + 3)).toBeUndefined()
      }
      expect(store.get(job.id)).toMatchObject({ state: 'leased', payload: 1 })
      expect(store.get(other.id)).toMatchObject({ state: 'ready', payload: 2 })
      expect(store.complete(job.id, 1, 'done', T0 + 4)).toBe(true)
    })

    test('counts completed jobs through completions, prunes and purges', ({ store }) => {
      for (let i = 0; i < 5; i++) store.enqueue({ queue: 'q', payload: i }, T0 + i)
      const jobs = store.lease('q', 5, T0 + 10, LEASE)
      store.transaction.run(() => {
        for (const j of jobs.slice(0, 3)) store.complete(j.id, j.attempt, null, T0 + 20)
        expect(store.complete(jobs[0]!.id, jobs[0]!.attempt, null, T0 + 20)).toBe(false) // no second count
      })
      store.complete(jobs[3]!.id, jobs[3]!.attempt, null, T0 + 30)
      expect(store.metrics('q', T0 + 40)).toMatchObject({ completed: 4, leased: 1 })
      expect(store.pruneCompleted('q', T0 + 25)).toBe(3)
      expect(store.metrics('q', T0 + 40).completed).toBe(1)
      store.complete(jobs[4]!.id, jobs[4]!.attempt, null, T0 + 50)
      expect(store.purge('q', 'completed')).toBe(2)
      expect(store.metrics('q', T0 + 60)).toMatchObject({ completed: 0, leased: 0 })
    })

    test('runs several verbs as one transaction', ({ store }) => {
      const { job } = store.enqueue({ queue: 'q', payload: null }, T0)
      const [leased] = store.transaction.run(() => store.lease('q', 1, T0, LEASE))
      const done = store.transaction.run(() => {
        const ok = store.complete(leased!.id, leased!.attempt, 'out', T0 + 1)
        store.enqueue({ queue: 'q', payload: 'next' }, T0 + 1)
        return ok
      })
      expect(done).toBe(true)
      expect(store.get(job.id)).toMatchObject({ state: 'completed', output: 'out' })
      expect(store.metrics('q', T0 + 2)).toMatchObject({ ready: 1, completed: 1 })
    })

    if (!opts.durable) return

    test('rolls a failed transaction back whole', ({ store }) => {
      const { job } = store.enqueue({ queue: 'q', payload: null }, T0)
      const [leased] = store.lease('q', 1, T0, LEASE)
      expect(() =>
        store.transaction.run(() => {
          store.complete(leased!.id, leased!.attempt, 'out', T0 + 1)
          throw new Error('the result event could not be stored')
        }),
      ).toThrow('could not be stored')
      expect(store.get(job.id)).toMatchObject({ state: 'leased', attempt: 1 })
      expect(store.metrics('q', T0 + 2)).toMatchObject({ completed: 0, leased: 1 })
    })

    test('takes back the completions of a rolled-back inner transaction, and keeps the rest', ({ store }) => {
      for (let i = 0; i < 3; i++) store.enqueue({ queue: 'q', payload: i }, T0)
      const [a, b, c] = store.lease('q', 3, T0, LEASE)
      store.transaction.run(() => {
        store.complete(a!.id, a!.attempt, null, T0 + 1)
        expect(() =>
          store.transaction.run(() => {
            store.complete(b!.id, b!.attempt, null, T0 + 1)
            throw new Error('its result event could not be stored')
          }),
        ).toThrow('could not be stored')
        store.transaction.run(() => store.complete(c!.id, c!.attempt, null, T0 + 1))
      })
      expect(store.get(b!.id)).toMatchObject({ state: 'leased' })
      expect(store.metrics('q', T0 + 2)).toMatchObject({ completed: 2, leased: 1 })
    })

    test('keeps jobs, leases and pauses across a reopen', ({ store, reopen }) => {
      store.setPaused('paused', true)
      const { job } = store.enqueue({ queue: 'q', payload: 'kept', idempotencyKey: 'once' }, T0)
      const done = store.enqueue({ queue: 'q', payload: 'done', priority: 1 }, T0).job
      store.complete(done.id, store.lease('q', 1, T0, LEASE)[0]!.attempt, 'out', T0 + 1)
      store.lease('q', 1, T0, LEASE)
      const again = reopen!()
      expect(again.metrics('q', T0 + 2)).toMatchObject({ completed: 1, leased: 1 })
      expect(again.get(job.id)).toMatchObject({ state: 'leased', attempt: 1, payload: 'kept' })
      expect(again.enqueue({ queue: 'q', payload: 'dup', idempotencyKey: 'once' }, T0 + 1).created).toBe(false)
      expect(again.lease('q', 1, T0 + LEASE, LEASE)[0]).toMatchObject({ id: job.id, attempt: 2 }) // crash recovery: lease expired
      expect(again.isPaused('paused')).toBe(true)
    })
  })

  describe(`QueueStore contract: ${name}: clock steps`, () => {
    const HOUR = 3_600_000
    /** When the clock is seen to step: the store was last written by then, on the old clock. */
    const S = T0 + 2_000

    /**
     * A queue 'q' as the old clock left it at S, with what each job had left then, and a queue
     * 'other' beside it:
     * - lapsed: leased at T0 for 500 ms, run out at S;
     * - held: leased at T0, renewed at S for 30 s: 30 s left;
     * - flaky: leased at T0, retried at T0 + 1 s to run at T0 + 7 s: due in 5 s;
     * - due: enqueued at T0 + 1 s to run at once: due;
     * - soon: enqueued at T0 + 1 s to run at T0 + 4 s: due in 2 s;
     * - overdue: enqueued at T0 + 1 s with a due time 2 h before T0: due;
     * - done, buried: completed and dead at T0 + 1 s.
     */
    const scene = (store: QueueStore) => {
      const put = (payload: string, now: number, runAt?: number, queue = 'q'): string => store.enqueue({ queue, payload, ...(runAt === undefined ? {} : { runAt }) }, now).job.id
      const lapsed = put('lapsed', T0)
      expect(store.lease('q', 1, T0, 500).map((j) => j.id)).toEqual([lapsed])
      const [held, flaky, done, buried] = ['held', 'flaky', 'done', 'buried'].map((p) => put(p, T0)) as [string, string, string, string]
      expect(store.lease('q', 10, T0, LEASE)).toHaveLength(4)
      const elsewhereLeased = put('elsewhere leased', T0, undefined, 'other')
      expect(store.lease('other', 1, T0, LEASE)).toHaveLength(1)
      expect(store.complete(done, 1, 'out', T0 + 1_000)).toBe(true)
      expect(store.moveToDead(buried, 1, 'broken', T0 + 1_000)).toBe(true)
      expect(store.retry(flaky, 1, T0 + 7_000, 'sensor busy', T0 + 1_000)).toBe(true)
      const due = put('due', T0 + 1_000)
      const soon = put('soon', T0 + 1_000, T0 + 4_000)
      const overdue = put('overdue', T0 + 1_000, T0 - 2 * HOUR)
      const elsewhere = put('elsewhere', T0 + 1_000, T0 + 4_000, 'other')
      expect(store.heartbeat(held, 1, S, LEASE)).toBe(true)
      const ids = { lapsed, held, flaky, due, soon, overdue, done, buried, elsewhere, elsewhereLeased }
      const jobs = Object.fromEntries(Object.entries(ids).map(([k, id]) => [k, store.get(id)!])) as Record<keyof typeof ids, Job>
      expect(store.metrics('q', S)).toMatchObject({ ready: 2, delayed: 2, leased: 2, completed: 1, dead: 1 })
      return { ids, jobs }
    }
    /** Payloads of what `lease` hands out at `now`. */
    const leased = (store: QueueStore, now: number): unknown[] => store.lease('q', 10, now, LEASE).map((j) => j.payload)

    test('clockStepped forward: delays and leases keep what they had left, due jobs stay due', ({ store }) => {
      const { ids, jobs } = scene(store)
      const N = S + HOUR
      // Enqueued on the new clock before the step is stored: not moved.
      const fresh = store.enqueue({ queue: 'q', payload: 'fresh', runAt: N + 2_000 }, N - 500).job
      expect(store.clockStepped('q', HOUR, N)).toBe(6)
      const moved = (j: Job): Partial<Job> => ({ createdAt: j.createdAt + HOUR, updatedAt: j.updatedAt + HOUR })
      expect(store.get(ids.held)).toMatchObject({ state: 'leased', attempt: 1, leaseUntil: N + 30_000, ...moved(jobs.held) })
      expect(store.get(ids.lapsed)).toMatchObject({ state: 'leased', attempt: 1, leaseUntil: N - 1_500, ...moved(jobs.lapsed) })
      expect(store.get(ids.flaky)).toMatchObject({ state: 'ready', runAt: N + 5_000, error: 'sensor busy', ...moved(jobs.flaky) })
      expect(store.get(ids.soon)).toMatchObject({ state: 'ready', runAt: N + 2_000, ...moved(jobs.soon) })
      // Due on the old clock, so due on the new one: the due time stays.
      expect(store.get(ids.due)).toMatchObject({ state: 'ready', runAt: T0 + 1_000, ...moved(jobs.due) })
      expect(store.get(ids.overdue)).toMatchObject({ state: 'ready', runAt: T0 - 2 * HOUR, ...moved(jobs.overdue) })
      for (const k of ['done', 'buried', 'elsewhere', 'elsewhereLeased'] as const) expect(store.get(ids[k])).toEqual(jobs[k])
      expect(store.get(fresh.id)).toEqual(fresh)
      expect(store.nextDueAt('other')).toBe(T0 + 4_000)

      expect(store.metrics('q', N)).toMatchObject({ ready: 2, delayed: 3, leased: 2, completed: 1, dead: 1 })
      // The lapsed lease is still run out; the 30 s lease is not.
      expect(leased(store, N)).toEqual(['overdue', 'lapsed', 'due'])
      expect(store.nextDueAt('q')).toBe(N + 2_000)
      expect(leased(store, N + 1_999)).toEqual([])
      expect(leased(store, N + 2_000)).toEqual(['soon', 'fresh'])
      expect(leased(store, N + 4_999)).toEqual([])
      expect(leased(store, N + 5_000)).toEqual(['flaky'])
      expect(store.heartbeat(ids.held, 1, N + 29_999, LEASE)).toBe(true)
    })

    test('clockStepped back: delays and leases keep what they had left, not an hour more', ({ store }) => {
      const { ids, jobs } = scene(store)
      const N = S - HOUR
      expect(store.clockStepped('q', -HOUR, N)).toBe(6)
      const moved = (j: Job): Partial<Job> => ({ createdAt: j.createdAt - HOUR, updatedAt: j.updatedAt - HOUR })
      expect(store.get(ids.held)).toMatchObject({ state: 'leased', attempt: 1, leaseUntil: N + 30_000, ...moved(jobs.held) })
      expect(store.get(ids.lapsed)).toMatchObject({ state: 'leased', attempt: 1, leaseUntil: N - 1_500, ...moved(jobs.lapsed) })
      expect(store.get(ids.flaky)).toMatchObject({ state: 'ready', runAt: N + 5_000, ...moved(jobs.flaky) })
      expect(store.get(ids.soon)).toMatchObject({ state: 'ready', runAt: N + 2_000, ...moved(jobs.soon) })
      // Due on the old clock but not on the new one: moved back with the step, so still due.
      expect(store.get(ids.due)).toMatchObject({ state: 'ready', runAt: N - 1_000, ...moved(jobs.due) })
      // Due on both clocks: the due time stays.
      expect(store.get(ids.overdue)).toMatchObject({ state: 'ready', runAt: T0 - 2 * HOUR, ...moved(jobs.overdue) })
      for (const k of ['done', 'buried', 'elsewhere', 'elsewhereLeased'] as const) expect(store.get(ids[k])).toEqual(jobs[k])

      expect(store.metrics('q', N)).toMatchObject({ ready: 2, delayed: 2, leased: 2, completed: 1, dead: 1 })
      expect(leased(store, N)).toEqual(['overdue', 'due', 'lapsed'])
      expect(store.nextDueAt('q')).toBe(N + 2_000)
      expect(leased(store, N + 1_999)).toEqual([])
      expect(leased(store, N + 2_000)).toEqual(['soon']) // not at N + 1 h + 2 s
      expect(leased(store, N + 5_000)).toEqual(['flaky'])
      expect(store.heartbeat(ids.held, 1, N + 29_999, LEASE)).toBe(true)
      expect(leased(store, N + 29_999)).toEqual([])
      expect(store.nextDueAt('other')).toBe(T0 + 4_000)
    })

    test('rebaseAhead: jobs last changed after now count their delay, lease and age from now', ({ store }) => {
      const { ids, jobs } = scene(store)
      // Restarted a day earlier on the clock than the store was last written.
      const R = S - 24 * HOUR
      // Last changed before R: not ahead, left alone.
      const early = store.enqueue({ queue: 'q', payload: 'early', runAt: R + 1_000 }, R - 1_000).job
      // Nothing is due for a day, and leases would hold for one.
      expect(store.metrics('q', R)).toMatchObject({ ready: 0, delayed: 5, leased: 2 })

      expect(store.rebaseAhead('q', R)).toBe(6)
      const from = (j: Job): Partial<Job> => ({ createdAt: R - (j.updatedAt - j.createdAt), updatedAt: R })
      expect(store.get(ids.held)).toMatchObject({ state: 'leased', attempt: 1, leaseUntil: R + 30_000, createdAt: R - 2_000, updatedAt: R })
      expect(store.get(ids.lapsed)).toMatchObject({ state: 'leased', attempt: 1, leaseUntil: R + 500, ...from(jobs.lapsed) })
      expect(store.get(ids.flaky)).toMatchObject({ state: 'ready', runAt: R + 6_000, createdAt: R - 1_000, updatedAt: R })
      expect(store.get(ids.soon)).toMatchObject({ state: 'ready', runAt: R + 3_000, ...from(jobs.soon) })
      expect(store.get(ids.due)).toMatchObject({ state: 'ready', runAt: R, ...from(jobs.due) })
      expect(store.get(ids.overdue)).toMatchObject({ state: 'ready', runAt: R, ...from(jobs.overdue) })
      expect(store.get(early.id)).toEqual(early)
      for (const k of ['done', 'buried', 'elsewhere', 'elsewhereLeased'] as const) expect(store.get(ids[k])).toEqual(jobs[k])
      expect(store.rebaseAhead('q', R)).toBe(0) // nothing ahead any more

      expect(store.metrics('q', R)).toMatchObject({ ready: 2, delayed: 3, leased: 2, completed: 1, dead: 1 })
      expect(leased(store, R).sort()).toEqual(['due', 'overdue'])
      expect(store.nextDueAt('q')).toBe(R + 500)
      expect(leased(store, R + 500)).toEqual(['lapsed'])
      expect(leased(store, R + 1_000)).toEqual(['early'])
      expect(leased(store, R + 2_999)).toEqual([])
      expect(leased(store, R + 3_000)).toEqual(['soon'])
      expect(leased(store, R + 6_000)).toEqual(['flaky'])
      expect(store.heartbeat(ids.held, 1, R + 29_999, LEASE)).toBe(true)

      // A queue with nothing ahead of now: unchanged.
      expect(store.rebaseAhead('other', S)).toBe(0)
      for (const k of ['elsewhere', 'elsewhereLeased'] as const) expect(store.get(ids[k])).toEqual(jobs[k])
    })

    if (!opts.durable) return

    test('rebaseAhead after a reopen: a store written at a later clock runs from an earlier one', ({ store, reopen }) => {
      const delayed = store.enqueue({ queue: 'q', payload: 'delayed', runAt: T0 + 2_000 }, T0).job
      store.enqueue({ queue: 'q', payload: 'running' }, T0)
      const [running] = store.lease('q', 1, T0, LEASE)
      const R = T0 - 24 * HOUR
      const again = reopen!()
      expect(again.rebaseAhead('q', R)).toBe(2)
      expect(again.get(delayed.id)).toMatchObject({ state: 'ready', runAt: R + 2_000, createdAt: R, updatedAt: R })
      expect(again.get(running!.id)).toMatchObject({ state: 'leased', attempt: 1, leaseUntil: R + LEASE })
      expect(again.lease('q', 10, R + 1_999, LEASE)).toEqual([])
      expect(again.lease('q', 10, R + 2_000, LEASE).map((j) => j.id)).toEqual([delayed.id])
      expect(again.heartbeat(running!.id, 1, R + LEASE - 1, LEASE)).toBe(true)
    })
  })
}
