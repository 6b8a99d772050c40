// Durable queues through the public API: workers, outcomes, retries, leases, result events,
// operations and shutdown. Time is a manual clock; stores are SQLite unless a test says otherwise.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import * as v from 'valibot'
import { describe, expect, it } from 'vitest'
import {
  createManualClock,
  createMemoryBridge,
  createMemoryHub,
  createRuntime,
  defineContract,
  defineService,
  ErrorCode,
  isOutpostError,
  type ManualClock,
  type MemoryHub,
  type QueueStore,
  type Runtime,
} from '../../runtime/index.js'
import { createSqliteOutbox, createSqliteQueueStore, openDeviceDatabase, type DeviceDatabase } from '../../runtime/stores/sqlite/index.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { until } from '../helpers/wait.js'

const Mode = v.picklist(['ok', 'throw', 'retry', 'fail', 'hang', 'ignoreAbort', 'never', 'progress', 'silent'])
const photos = defineContract({
  name: 'photos',
  version: '1',
  events: { taken: v.object({ photo: v.number() }) },
  queues: {
    resize: {
      payload: v.object({ photo: v.number(), mode: v.optional(Mode, 'ok') }),
      result: v.object({ width: v.number() }),
      progress: v.object({ pct: v.number() }),
      leaseMs: 10_000,
      maxAttempts: 3,
      backoff: { initialMs: 1_000, maxMs: 8_000 },
      concurrency: 2,
    },
    manual: {
      payload: v.object({ photo: v.number(), mode: v.optional(Mode, 'ok') }),
      result: v.object({ width: v.number() }),
      leaseMs: 5_000,
      heartbeatMs: 0,
    },
    timed: {
      payload: v.object({ photo: v.number(), mode: v.optional(Mode, 'ok') }),
      result: v.object({ width: v.number() }),
      timeoutMs: 3_000,
    },
  },
})

const T0 = Date.UTC(2026, 10, 23, 12, 0, 0)

interface Seen {
  runs: { photo: number; attempt: number }[]
  running: number
  maxRunning: number
  aborted: unknown[]
  results: { name: string; payload: Record<string, unknown>; corr?: string }[]
}

function photoService(seen: Seen) {
  const work = async (p: { photo: number; mode: string }, ctx: { job: { attempt: number }; signal: AbortSignal; heartbeat(x?: { pct: number }): boolean; retry(o?: { delayMs?: number; reason?: string }): unknown; fail(r: string): unknown }) => {
    seen.runs.push({ photo: p.photo, attempt: ctx.job.attempt })
    seen.running++
    seen.maxRunning = Math.max(seen.maxRunning, seen.running)
    try {
      switch (p.mode) {
        case 'throw':
          throw new Error('sensor glitch')
        case 'retry':
          return ctx.retry({ delayMs: 30_000, reason: 'camera busy' })
        case 'fail':
          return ctx.fail('photo is corrupt')
        case 'progress':
          ctx.heartbeat({ pct: 50 })
          return { width: 640 }
        case 'hang':
          await new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason)))
          return { width: 0 }
        case 'never':
          // Ignores its signal and never returns.
          await new Promise(() => undefined)
          return { width: 0 }
        case 'ignoreAbort':
          ctx.signal.addEventListener('abort', () => seen.aborted.push(ctx.signal.reason))
          await new Promise((r) => setTimeout(r, 400))
          return { width: 1 }
        default:
          await new Promise((r) => setImmediate(r))
          return { width: p.photo * 10 }
      }
    } finally {
      seen.running--
    }
  }
  return defineService(photos, {
    commands: {},
    workers: {
      resize: (p, ctx) => work(p, ctx) as never,
      manual: (p, ctx) => work(p, ctx) as never,
      timed: (p, ctx) => work(p, ctx) as never,
    },
  })
}

const watcherContract = defineContract({ name: 'watcher', version: '1' })
function watcher(seen: Seen) {
  return defineService(watcherContract, {
    commands: {},
    subscriptions: (s) => ({
      all: s.pattern({ service: 'photos', schema: v.record(v.string(), v.unknown()) }, (payload, ctx) => {
        seen.results.push({ name: ctx.event.name, payload, corr: ctx.event.correlationId })
      }),
    }),
  })
}

describe('durable queues', () => {
  const cleanup = cleanupAfterEach()

  async function device(o: { clock?: ManualClock; hub?: MemoryHub; store?: 'sqlite' | 'memory'; dir?: string; outboxBytes?: number; results?: 'bestEffort' } = {}) {
    const clock = o.clock ?? createManualClock(T0)
    const hub = o.hub ?? createMemoryHub()
    const seen: Seen = { runs: [], running: 0, maxRunning: 0, aborted: [], results: [] }
    let database: DeviceDatabase | undefined
    let queueStore: QueueStore | undefined
    let outbox
    if (o.store !== 'memory') {
      const dir = o.dir ?? mkdtempSync(path.join(tmpdir(), 'outpost-queue-'))
      if (o.dir === undefined) cleanup(() => rmSync(dir, { recursive: true, force: true }))
      database = openDeviceDatabase({ path: path.join(dir, 'device.db') })
      queueStore = createSqliteQueueStore(database)
      outbox = createSqliteOutbox(database, o.outboxBytes === undefined ? {} : { limits: { results: { maxBytes: o.outboxBytes, policy: 'reject' } } })
    }
    const rt = createRuntime({ bridge: createMemoryBridge({ hub, deviceId: 'cam-1' }), services: [photoService(seen)], clock, queueStore, outbox })
    const watch = createRuntime({ bridge: createMemoryBridge({ hub, deviceId: 'watch-1' }), services: [watcher(seen)] })
    await watch.start()
    await rt.start()
    const stop = async (): Promise<void> => {
      await rt.stop({ drainMs: 500 })
      await watch.stop()
      database?.close()
    }
    cleanup(stop)
    return { rt, clock, seen, database, resize: rt.queue(photos, 'resize'), manual: rt.queue(photos, 'manual'), timed: rt.queue(photos, 'timed'), stop }
  }

  it('runs an enqueued job and publishes its completion with job id, attempt, output and correlation', async () => {
    const { resize, seen } = await device()
    const ref = resize.enqueue({ photo: 4 }, { correlationId: 'batch-7' })
    expect(ref.created).toBe(true)
    await until(() => seen.results.length === 1)
    expect(seen.results[0]).toEqual({ name: 'resize.completed', payload: { jobId: ref.id, queue: 'resize', attempt: 1, output: { width: 40 } }, corr: 'batch-7' })
    expect(resize.get(ref.id)).toMatchObject({ state: 'completed', output: { width: 40 }, attempt: 1 })
  })

  it('refuses enqueue options of the wrong kind with BAD_ARGUMENT and stores nothing (a text runAt was a job delayed for ever)', async () => {
    const { resize } = await device()
    const refused = (opts: Record<string, unknown>): string => {
      try {
        resize.enqueue({ photo: 1 }, opts as never)
      } catch (e) {
        expect(isOutpostError(e, ErrorCode.BAD_ARGUMENT), String(e)).toBe(true)
        return (e as Error).message
      }
      throw new Error(`took ${JSON.stringify(opts)}`)
    }
    expect(refused({ runAt: 'tomorrow' })).toContain('runAt "tomorrow" is not a time in epoch ms')
    expect(refused({ runAt: Number.NaN })).toContain('runAt NaN')
    expect(refused({ runAt: new Date() })).toContain('runAt')
    expect(refused({ delayMs: 1e20 })).toContain('delayMs 100000000000000000000 is not a number of ms from 0')
    expect(refused({ delayMs: -5 })).toContain('delayMs -5')
    expect(refused({ priority: Number.NaN })).toContain('priority NaN is not a number')
    expect(refused({ idempotencyKey: 7 })).toContain('idempotencyKey')
    expect(resize.metrics()).toMatchObject({ ready: 0, leased: 0, dead: 0 })
    // Within the bounds: taken.
    expect(resize.enqueue({ photo: 2 }, { delayMs: 60_000, priority: 2.5 }).created).toBe(true)
  })

  it('refuses a payload that fails the queue schema with VALIDATION_FAILED and stores nothing', async () => {
    const { resize } = await device()
    let err: unknown
    try {
      resize.enqueue({ photo: 'four' } as never)
    } catch (e) {
      err = e
    }
    expect(isOutpostError(err, ErrorCode.VALIDATION_FAILED)).toBe(true)
    expect(resize.metrics()).toMatchObject({ ready: 0, leased: 0, dead: 0 })
  })

  it('returns the existing job for a repeated idempotency key and runs it once', async () => {
    const { resize, seen } = await device()
    const a = resize.enqueue({ photo: 1 }, { idempotencyKey: 'photo-1' })
    const b = resize.enqueue({ photo: 1 }, { idempotencyKey: 'photo-1' })
    expect(b).toEqual({ id: a.id, created: false })
    await until(() => seen.results.length === 1)
    expect(seen.runs).toHaveLength(1)
  })

  it('retries a throwing worker with growing backoff, announces each failure, then dead-letters it', async () => {
    const { resize, seen, clock } = await device()
    const ref = resize.enqueue({ photo: 2, mode: 'throw' })
    await until(() => seen.results.length === 1)
    const first = seen.results[0]!.payload
    expect(seen.results[0]!.name).toBe('resize.failed')
    expect(first).toMatchObject({ jobId: ref.id, attempt: 1, error: { code: 'INTERNAL' } })
    // Equal jitter: the first delay lies in [500, 1000] ms.
    expect(first.retryAt).toBeGreaterThanOrEqual(T0 + 500)
    expect(first.retryAt).toBeLessThanOrEqual(T0 + 1_000)
    await clock.advance(1_000)
    await until(() => seen.results.length === 2)
    const second = seen.results[1]!.payload
    // Attempt 2 ran between its due time and T0 + 1 s; its delay lies in [1000, 2000] ms.
    expect(Number(second.retryAt)).toBeGreaterThanOrEqual(Number(first.retryAt) + 1_000)
    expect(Number(second.retryAt)).toBeLessThanOrEqual(T0 + 3_000)
    await clock.advance(2_000)
    await until(() => seen.results.length === 3)
    expect(seen.results[2]).toMatchObject({ name: 'resize.dead', payload: { jobId: ref.id, attempt: 3, reason: 'attempts', error: { code: 'INTERNAL' } } })
    expect(resize.listDead()).toEqual([expect.objectContaining({ id: ref.id, deadReason: 'attempts', errorCode: 'INTERNAL' })])
    expect(seen.runs.map((r) => r.attempt)).toEqual([1, 2, 3])
  })

  it('honours a worker asking to retry later, and one giving up at once', async () => {
    const { resize, seen, clock } = await device()
    const later = resize.enqueue({ photo: 3, mode: 'retry' })
    const doomed = resize.enqueue({ photo: 5, mode: 'fail' })
    await until(() => seen.results.length === 2)
    const byJob = new Map(seen.results.map((r) => [r.payload.jobId, r]))
    expect(byJob.get(later.id)).toMatchObject({ name: 'resize.failed', payload: { retryAt: T0 + 30_000, error: { code: 'JOB_RETRY', message: 'camera busy' } } })
    expect(byJob.get(doomed.id)).toMatchObject({ name: 'resize.dead', payload: { reason: 'failed', attempt: 1, error: { code: 'JOB_FAILED', message: 'photo is corrupt' } } })
    await clock.advance(29_000)
    expect(seen.runs.filter((r) => r.photo === 3)).toHaveLength(1)
    await clock.advance(1_000)
    await until(() => seen.runs.filter((r) => r.photo === 3).length === 2)
  })

  it('runs at most `concurrency` jobs at once, higher priority first, delayed jobs when due', async () => {
    const { resize, seen, clock } = await device()
    resize.enqueueMany([
      { payload: { photo: 1 } },
      { payload: { photo: 2 } },
      { payload: { photo: 3 }, opts: { priority: 5 } },
      { payload: { photo: 4 }, opts: { delayMs: 60_000, priority: 9 } },
      { payload: { photo: 5 } },
    ])
    await until(() => seen.results.length === 4)
    expect(seen.maxRunning).toBe(2)
    expect(seen.runs.map((r) => r.photo)).toEqual([3, 1, 2, 5])
    expect(resize.metrics()).toMatchObject({ delayed: 1, completed: 4 })
    await clock.advance(60_000)
    await until(() => seen.results.length === 5)
    expect(seen.runs.at(-1)!.photo).toBe(4)
  })

  it('records progress from a heartbeat and publishes it as <queue>.progress', async () => {
    const { resize, seen } = await device()
    const ref = resize.enqueue({ photo: 6, mode: 'progress' })
    await until(() => seen.results.length === 2)
    expect(seen.results.map((r) => r.name)).toEqual(['resize.progress', 'resize.completed'])
    expect(seen.results[0]!.payload).toEqual({ jobId: ref.id, queue: 'resize', attempt: 1, progress: { pct: 50 } })
    expect(resize.get(ref.id)?.progress).toEqual({ pct: 50 })
  })

  it('renews leases of running jobs by itself, so only a dead process loses them', async () => {
    const { resize, seen, clock } = await device()
    const ref = resize.enqueue({ photo: 7, mode: 'hang' })
    await until(() => seen.runs.length === 1)
    for (let i = 0; i < 6; i++) await clock.advance(5_000) // 30 s, three times the lease
    expect(seen.runs).toHaveLength(1)
    expect(resize.get(ref.id)).toMatchObject({ state: 'leased', attempt: 1 })
    expect(resize.get(ref.id)!.leaseUntil).toBeGreaterThan(clock.now())
  })

  it('aborts a worker that does not heartbeat once its lease ran out, and offers the job again', async () => {
    const { manual, seen, clock } = await device()
    const ref = manual.enqueue({ photo: 8, mode: 'hang' })
    await until(() => seen.runs.length === 1)
    await clock.advance(5_000)
    expect(seen.runs).toHaveLength(1)
    await clock.advance(2_000) // the lease ran out at 5 s; noticed within a third of the lease
    await until(() => seen.runs.length === 2)
    expect(seen.runs.map((r) => r.attempt)).toEqual([1, 2])
    expect(manual.get(ref.id)).toMatchObject({ state: 'leased', attempt: 2 })
    expect(manual.metrics().completed).toBe(0)
  })

  it('aborts an attempt that runs past the timeout and counts it as failed', async () => {
    const { timed, seen, clock } = await device()
    const ref = timed.enqueue({ photo: 9, mode: 'hang' })
    await until(() => seen.runs.length === 1)
    await clock.advance(2_000)
    expect(seen.results).toHaveLength(0)
    await clock.advance(1_000)
    await until(() => seen.results.length === 1)
    expect(seen.results[0]).toMatchObject({ name: 'timed.failed', payload: { jobId: ref.id, attempt: 1, error: { code: 'TIMEOUT' } } })
  })

  it('an attempt that does not return once aborted for its timeout gives its slot back: it counts as failed, and the next job runs (a queue of concurrency 1 stood still)', async () => {
    const { timed, seen, clock } = await device()
    const stuck = timed.enqueue({ photo: 30, mode: 'never' })
    const next = timed.enqueue({ photo: 31 })
    await until(() => seen.runs.length === 1)
    await clock.advance(3_000) // the timeout: aborted
    await clock.advance(1_000) // a sweep later, still running: given up
    await until(() => timed.get(next.id)?.state === 'completed')
    expect(seen.results.map((r) => [r.name, r.payload.jobId])).toEqual([['timed.failed', stuck.id], ['timed.completed', next.id]])
    expect(seen.results[0]!.payload).toMatchObject({ attempt: 1, error: { code: 'TIMEOUT', message: expect.stringContaining('did not return when aborted') } })
    expect(timed.get(stuck.id)).toMatchObject({ state: 'ready', attempt: 1 })
  })

  it('cancels a running job: its signal aborts and it lands in the dead letters as cancelled', async () => {
    const { resize, seen } = await device()
    const ref = resize.enqueue({ photo: 10, mode: 'hang' })
    await until(() => seen.runs.length === 1)
    expect(resize.cancel(ref.id)).toMatchObject({ state: 'dead', deadReason: 'cancelled' })
    await until(() => seen.running === 0)
    await until(() => seen.results.length === 1)
    expect(seen.results[0]).toMatchObject({ name: 'resize.dead', payload: { jobId: ref.id, reason: 'cancelled' } })
    expect(resize.get(ref.id)?.state).toBe('dead')
  })

  it('holds a paused queue, resumes it, and redrives dead letters', async () => {
    const { resize, seen, clock } = await device()
    resize.pause()
    const ref = resize.enqueue({ photo: 11, mode: 'fail' })
    for (let i = 0; i < 5; i++) await clock.advance(1_000) // five of the idle queue's looks
    expect(seen.runs).toHaveLength(0)
    expect(resize.metrics()).toMatchObject({ ready: 1, paused: true })
    resize.resume()
    await until(() => resize.get(ref.id)?.state === 'dead')
    expect(resize.redrive([ref.id])).toBe(1)
    await until(() => seen.runs.length === 2)
    await until(() => resize.get(ref.id)?.state === 'dead') // it fails again: dead once more
    expect(resize.purge('dead')).toBe(1)
    expect(resize.get(ref.id)).toBeUndefined()
  })

  it('picks a crashed device’s jobs up again once their leases expire', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-queue-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    const clock = createManualClock(T0)
    const first = await device({ clock, dir })
    const ref = first.resize.enqueue({ photo: 12, mode: 'hang' })
    await until(() => first.seen.runs.length === 1)
    // The "crash": the process goes away without stopping; only its database stays.
    first.database!.close()
    const second = await device({ clock, dir })
    second.resize.pause()
    await clock.advance(10_000)
    second.resize.enqueue({ photo: 13 }) // wakes the queue
    second.resize.resume()
    await until(() => second.seen.runs.some((r) => r.photo === 12))
    expect(second.seen.runs.find((r) => r.photo === 12)).toEqual({ photo: 12, attempt: 2 })
    expect(second.resize.get(ref.id)?.attempt).toBe(2)
  })

  it('on stop waits for running workers, then gives back what did not finish without counting an attempt', async () => {
    const { rt, resize, seen } = await device()
    const quick = resize.enqueue({ photo: 14 })
    const stuck = resize.enqueue({ photo: 15, mode: 'ignoreAbort' })
    await until(() => seen.runs.length === 2)
    await rt.stop({ drainMs: 100 })
    expect(resize.get(quick.id)?.state).toBe('completed')
    expect(seen.aborted).toHaveLength(1)
    expect(isOutpostError(seen.aborted[0], ErrorCode.CANCELLED)).toBe(true)
    expect(resize.get(stuck.id)).toMatchObject({ state: 'ready', attempt: 0 })
  })

  it('with jobsOnStop: expire, leaves an unfinished job to its lease instead of giving it back', async () => {
    const hub = createMemoryHub()
    const seen: Seen = { runs: [], running: 0, maxRunning: 0, aborted: [], results: [] }
    const clock = createManualClock(T0)
    const rt = createRuntime({ bridge: createMemoryBridge({ hub, deviceId: 'cam-9' }), services: [photoService(seen)], clock, jobsOnStop: 'expire' })
    await rt.start()
    const resize = rt.queue(photos, 'resize')
    const stuck = resize.enqueue({ photo: 20, mode: 'ignoreAbort' })
    await until(() => seen.runs.length === 1)
    await rt.stop({ drainMs: 50 })
    expect(seen.aborted).toHaveLength(1)
    // Still leased, attempt counted: whoever opens the queue next takes it once the lease ends.
    expect(resize.get(stuck.id)).toMatchObject({ state: 'leased', attempt: 1, leaseUntil: T0 + 10_000 })
  })

  it('does not count a job done while its required result event cannot be stored', async () => {
    const { resize, seen, rt, clock } = await device({ outboxBytes: 10 })
    const ref = resize.enqueue({ photo: 16 })
    await until(() => seen.runs.length === 1)
    // The completion is tried again every second; within the lease, none of the tries counts it.
    for (let i = 0; i < 5; i++) await clock.advance(1_000)
    expect(seen.runs).toHaveLength(1)
    expect(resize.get(ref.id)?.state).toBe('leased')
    expect(rt.stats().outbox?.entries).toBe(0)
    expect(rt.stats().queues['photos/resize']?.completed).toBe(0)
  })

  it('runs the same service over a memory queue store', async () => {
    const { resize, seen } = await device({ store: 'memory' })
    const ref = resize.enqueue({ photo: 17 })
    await until(() => seen.results.length === 1)
    expect(seen.results[0]).toMatchObject({ name: 'resize.completed', payload: { jobId: ref.id, output: { width: 170 } } })
  })

  it('dead-letters a job that lost its lease more often than it may be tried, without running it again', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-queue-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    const database = openDeviceDatabase({ path: path.join(dir, 'device.db') })
    const store = createSqliteQueueStore(database)
    const { job } = store.enqueue({ queue: 'photos/resize', payload: { photo: 18 } }, T0)
    for (let i = 0; i < 3; i++) store.lease('photos/resize', 1, T0 + i * 10_000, 10_000) // three crashes mid-run
    database.close()
    const { resize, seen, clock } = await device({ dir, clock: createManualClock(T0 + 30_000) })
    await clock.advance(1)
    await until(() => resize.get(job.id)?.state === 'dead')
    expect(seen.runs).toHaveLength(0)
    expect(resize.get(job.id)).toMatchObject({ deadReason: 'attempts', errorCode: 'LEASE_LOST', attempt: 4 })
  })
})

describe('queue declarations', () => {
  it('rejects a service without a worker for a declared queue', () => {
    let err: unknown
    try {
      defineService(photos, { commands: {}, workers: { resize: () => ({ width: 1 }) } } as never)
    } catch (e) {
      err = e
    }
    expect(isOutpostError(err, ErrorCode.INVALID_CONFIG)).toBe(true)
  })

  it('rejects nonsense policy numbers at declaration', () => {
    expect(() => defineContract({ name: 'x', version: '1', queues: { q: { payload: v.any(), result: v.any(), concurrency: 0 } } })).toThrow(/concurrency/)
    expect(() => defineContract({ name: 'x', version: '1', queues: { q: { payload: v.any(), result: v.any(), leaseMs: 1_000, heartbeatMs: 2_000 } } })).toThrow(/heartbeatMs/)
  })

  it('declares and emits no result events for a queue with results: none', async () => {
    const quiet = defineContract({ name: 'quiet', version: '1', queues: { tidy: { payload: v.object({ n: v.number() }), result: v.object({}), results: 'none' } } })
    expect(Object.keys(quiet.events)).toEqual([])
    const hub = createMemoryHub()
    const heard: string[] = []
    const listener = createRuntime({
      bridge: createMemoryBridge({ hub, deviceId: 'ear-1' }),
      services: [defineService(defineContract({ name: 'ear', version: '1' }), { commands: {}, subscriptions: (s) => ({ all: s.pattern({ service: 'quiet', schema: v.unknown() }, (_p, ctx) => void heard.push(ctx.event.name)) }) })],
    })
    const rt = createRuntime({ bridge: createMemoryBridge({ hub, deviceId: 'quiet-1' }), services: [defineService(quiet, { commands: {}, workers: { tidy: () => ({}) } })] })
    await listener.start()
    await rt.start()
    const tidy = rt.queue(quiet, 'tidy')
    const ref = tidy.enqueue({ n: 1 })
    await until(() => tidy.get(ref.id)?.state === 'completed')
    await new Promise((r) => setTimeout(r, 50))
    expect(heard).toEqual([])
    expect(rt.stats().queues['quiet/tidy']).toMatchObject({ completed: 1, resultsFailed: 0 })
    await rt.stop()
    await listener.stop()
  })

  it('declares result events a subscriber can name, and keeps handlers from emitting them', async () => {
    expect(Object.keys(photos.events).sort()).toEqual([
      'manual.completed', 'manual.dead', 'manual.failed', 'resize.completed', 'resize.dead', 'resize.failed', 'resize.progress', 'taken', 'timed.completed', 'timed.dead', 'timed.failed',
    ])
    const poker = defineContract({ name: 'poker', version: '1', commands: { poke: { payload: v.object({}), result: v.object({ code: v.string() }) } }, queues: { q: { payload: v.object({}), result: v.object({}) } } })
    const svc = defineService(poker, {
      workers: { q: () => ({}) },
      commands: {
        poke: async (_p, ctx) => {
          try {
            await (ctx.emit as (e: string, p: unknown) => Promise<void>)('q.completed', { jobId: 'x', queue: 'q', attempt: 1, output: {} })
            return { code: 'emitted' }
          } catch (e) {
            return { code: (e as { code: string }).code }
          }
        },
      },
    })
    const rt: Runtime = createRuntime({ bridge: createMemoryBridge({ hub: createMemoryHub(), deviceId: 'poker-1' }), services: [svc] })
    await rt.start()
    expect(await rt.client(poker).poke({})).toEqual({ code: 'NO_HANDLER' })
    await rt.stop()
  })
})

describe('workers that return at once (no promise)', () => {
  const cleanup = cleanupAfterEach()
  const How = v.picklist(['value', 'throw', 'throwDecision', 'returnDecision', 'badResult', 'thenable', 'badThen', 'rejectingThenable', 'throwHostile', 'returnHostile', 'rejectHostile'])
  /** A value every look at which throws: its properties, its prototype, its keys. */
  const hostile = (): object => {
    const trap = (): never => {
      throw new Error('trap')
    }
    return new Proxy({}, { get: trap, getPrototypeOf: trap, has: trap, ownKeys: trap, getOwnPropertyDescriptor: trap })
  }
  const quick = defineContract({
    name: 'quick',
    version: '1',
    queues: {
      step: {
        payload: v.object({ n: v.number(), how: v.optional(How, 'value') }),
        result: v.object({ n: v.number() }),
        maxAttempts: 1,
        concurrency: 4,
      },
    },
  })

  async function quickDevice() {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-quick-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    const database = openDeviceDatabase({ path: path.join(dir, 'device.db') })
    const order: number[] = []
    const svc = defineService(quick, {
      commands: {},
      workers: {
        step: (p, ctx) => {
          order.push(p.n)
          switch (p.how) {
            case 'throw':
              throw new Error('no sensor')
            case 'throwDecision':
              throw ctx.fail('thrown decision')
            case 'returnDecision':
              return ctx.fail('returned decision')
            case 'badResult':
              return { n: 'not a number' } as never
            case 'thenable':
              // Not a native promise: waited for as `await` would.
              return { then: (ok: (x: unknown) => void) => setTimeout(() => ok({ n: p.n }), 5) } as never
            case 'rejectingThenable':
              return { then: (_ok: unknown, bad: (e: unknown) => void) => bad(new Error('thenable said no')) } as never
            case 'throwHostile':
              throw hostile()
            case 'returnHostile':
              return hostile() as never
            case 'rejectHostile':
              return Promise.reject(hostile()) as never
            case 'badThen':
              // Reading `then` throws: the attempt fails, the runtime goes on.
              return Object.defineProperty({}, 'then', { get: () => { throw new Error('then getter') } }) as never
            default:
              return { n: p.n }
          }
        },
      },
    })
    const rt = createRuntime({ bridge: createMemoryBridge({ hub: createMemoryHub(), deviceId: 'quick-1' }), services: [svc], queueStore: createSqliteQueueStore(database), outbox: createSqliteOutbox(database) })
    await rt.start()
    cleanup(async () => {
      await rt.stop({ drainMs: 200 })
      database.close()
    })
    return { rt, step: rt.queue(quick, 'step'), order }
  }

  it('settles each outcome a worker returns or throws at once, as it does an async one', async () => {
    const { step } = await quickDevice()
    const refs = (['value', 'throw', 'throwDecision', 'returnDecision', 'badResult', 'thenable', 'rejectingThenable', 'badThen', 'throwHostile', 'returnHostile', 'rejectHostile'] as const).map((how, n) => ({ how, id: step.enqueue({ n, how }).id }))
    await until(() => refs.every((r) => ['completed', 'dead'].includes(step.get(r.id)?.state ?? '')))
    const by = Object.fromEntries(refs.map((r) => [r.how, step.get(r.id)!]))
    expect(by.value).toMatchObject({ state: 'completed', output: { n: 0 } })
    expect(by.thenable).toMatchObject({ state: 'completed', output: { n: 5 } })
    expect(by.throw).toMatchObject({ state: 'dead', errorCode: ErrorCode.INTERNAL })
    expect(by.throwDecision).toMatchObject({ state: 'dead', error: 'thrown decision' })
    expect(by.returnDecision).toMatchObject({ state: 'dead', error: 'returned decision' })
    expect(by.badResult).toMatchObject({ state: 'dead', errorCode: ErrorCode.INTERNAL })
    expect(by.rejectingThenable).toMatchObject({ state: 'dead', errorCode: ErrorCode.INTERNAL })
    expect(by.badThen).toMatchObject({ state: 'dead', errorCode: ErrorCode.INTERNAL })
    // Values that throw at every look: the attempt fails as an internal error, whose message
    // (what the value threw) stays inside, and the device goes on.
    for (const how of ['throwHostile', 'returnHostile', 'rejectHostile'] as const) expect(by[how], how).toMatchObject({ state: 'dead', errorCode: ErrorCode.INTERNAL, error: 'internal error' })
    const after = step.enqueue({ n: 99 })
    await until(() => step.get(after.id)?.state === 'completed')
  })

  it('runs thousands of jobs leased ahead in one go without deepening the stack, in the order they were leased', async () => {
    const { rt, step, order } = await quickDevice()
    step.enqueueMany(Array.from({ length: 3_000 }, (_, n) => ({ payload: { n } })))
    await until(() => (rt.stats().queues['quick/step']?.completed ?? 0) === 3_000, 20_000)
    expect(order).toEqual(Array.from({ length: 3_000 }, (_, n) => n))
    expect(step.metrics()).toMatchObject({ completed: 3_000, ready: 0, leased: 0, dead: 0 })
  })
})
