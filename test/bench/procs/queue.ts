// Job queue benchmark process, one system per process: enqueue N jobs one by one and in
// batches, then process N jobs with 8 workers and a handler that does nothing. Prints one JSON
// line: {enqueue_one, enqueue_batch, process} in jobs/s (and latency figures for `latency-*`).
//
//   outpost   Outpost's runtime: a queue with concurrency 8 on the device database, result
//             events committed to the outbox with each settlement (the default, `required`)
//   naive     the same SQLite store driven by a per-job loop: one transaction to lease a job,
//             one to complete it (8 loops)
//   one-commit  the same, with lease and completion in one transaction per job: under
//             synchronous=FULL that is one fsync per job, the baseline group commit is measured against
//   (a fourth argument `none` runs Outpost's queue with `results: 'none'`: no result events)
//   plainjob  plainjob 0.0.14 on better-sqlite3 (8 workers on one queue; it has no concurrency option)
//   bullmq    BullMQ on the local Redis, a Worker with concurrency 8
//   latency-outpost / latency-bullmq: an idle worker; time from enqueue to the handler starting
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import Database from 'better-sqlite3'
import * as v from 'valibot'
import { createMemoryBridge, createMemoryHub, createRuntime, defineContract, defineService } from '../../../runtime/index.js'
import { createSqliteOutbox, createSqliteQueueStore, openDeviceDatabase, type Synchronous } from '../../../runtime/stores/sqlite/index.js'
import { perOp, startPhase } from './phase-profile.js'

const [system, countArg, syncArg, resultsArg] = process.argv.slice(2) as [string, string, Synchronous | undefined, 'required' | 'none' | undefined]
const N = Number(countArg)
const sync: Synchronous = syncArg ?? 'NORMAL'
const CONCURRENCY = 8
const BATCH = 1_000
const dir = mkdtempSync(path.join(tmpdir(), 'outpost-bench-queue-'))
const payload = (i: number) => ({ deviceId: 'dev-17', reading: 20 + (i % 50) / 10, ts: 1_732_350_000_000 + i })
const rate = (n: number, ms: number): number => Math.round(n / (ms / 1000))
const out = (o: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify(o)}\n`)
  rmSync(dir, { recursive: true, force: true })
  process.exit(0)
}

const contract = (results: 'required' | 'none') =>
  defineContract({
    name: 'bench',
    version: '1',
    queues: {
      work: {
        payload: v.object({ deviceId: v.string(), reading: v.number(), ts: v.number() }),
        result: v.object({ ok: v.boolean() }),
        concurrency: CONCURRENCY,
        results,
      },
    },
  })

/** An Outpost device: SQLite database with queue store and outbox; `started` is called when a handler starts. */
function outpostDevice(file: string, results: 'required' | 'none', started: () => void = () => undefined) {
  const c = contract(results)
  const database = openDeviceDatabase({ path: path.join(dir, file), synchronous: sync })
  const svc = defineService(c, {
    commands: {},
    workers: {
      work: () => {
        started()
        return { ok: true }
      },
    },
  })
  const rt = createRuntime({
    bridge: createMemoryBridge({ hub: createMemoryHub(), deviceId: 'bench-1' }),
    services: [svc],
    queueStore: createSqliteQueueStore(database),
    outbox: createSqliteOutbox(database),
  })
  return { rt, q: rt.queue(c, 'work'), database }
}

const waitFor = async (done: () => boolean): Promise<void> => {
  while (!done()) await new Promise((r) => setTimeout(r, 5))
}

async function outpost(): Promise<void> {
  const results = resultsArg ?? 'required'
  // Enqueue, one commit per job (WAL NORMAL only: under FULL that is one fsync each), on a
  // runtime that is not started, so nothing runs them.
  let enqueueOne: number | null = null
  let cpuEnqueueOne: number | null = null
  let t0 = performance.now()
  if (sync === 'NORMAL') {
    const phase = await startPhase()
    t0 = performance.now() // opening the database counts, as it always has
    const one = outpostDevice('one.db', results)
    for (let i = 0; i < N; i++) one.q.enqueue(payload(i))
    enqueueOne = rate(N, performance.now() - t0)
    cpuEnqueueOne = perOp(await phase.end(), N)
    one.database.close()
  }
  // Enqueue in batches of 1,000, then process.
  // Completion is watched through the runtime's stats only once every handler has started:
  // stats() also deletes delivered outbox entries (so its counts are exact), and calling it
  // every 5 ms would add commits that a device left alone does not make.
  let startedJobs = 0
  const dev = outpostDevice('batch.db', results, () => void startedJobs++)
  let phase = await startPhase()
  t0 = performance.now()
  for (let i = 0; i < N; i += BATCH) dev.q.enqueueMany(Array.from({ length: Math.min(BATCH, N - i) }, (_, k) => ({ payload: payload(i + k) })))
  const enqueueBatch = rate(N, performance.now() - t0)
  const cpuEnqueueBatch = perOp(await phase.end(), N)
  phase = await startPhase(`queue-outpost-${sync.toLowerCase()}-${results}-process`)
  t0 = performance.now()
  await dev.rt.start()
  await waitFor(() => startedJobs >= N && (dev.rt.stats().queues['bench/work']?.completed ?? 0) >= N)
  const processed = rate(N, performance.now() - t0)
  const cpuProcess = perOp(await phase.end(), N)
  const m = dev.q.metrics()
  if (m.completed !== N) throw new Error(`only ${m.completed} of ${N} completed`)
  const resultEvents = dev.rt.stats().outbox!.appended
  await dev.rt.stop()
  dev.database.close()
  out({ enqueue_one: enqueueOne, enqueue_batch: enqueueBatch, process: processed, result_events: resultEvents, cpu_enqueue_one: cpuEnqueueOne, cpu_enqueue_batch: cpuEnqueueBatch, cpu_process: cpuProcess })
}

/** `naive`: lease in one transaction, complete in another. `one-commit`: both in one transaction per job (one fsync per job under FULL). */
async function naive(oneCommit = false): Promise<void> {
  const database = openDeviceDatabase({ path: path.join(dir, 'naive.db'), synchronous: sync })
  const store = createSqliteQueueStore(database)
  let phase = await startPhase()
  let t0 = performance.now()
  let enqueueOne: number | null = null
  let cpuEnqueueOne: number | null = null
  if (sync === 'NORMAL') {
    for (let i = 0; i < N; i++) store.enqueue({ queue: 'work', payload: payload(i) }, Date.now())
    enqueueOne = rate(N, performance.now() - t0)
    cpuEnqueueOne = perOp(await phase.end(), N)
  } else store.enqueueMany(Array.from({ length: N }, (_, i) => ({ queue: 'work', payload: payload(i) })), Date.now())
  phase = await startPhase(`queue-${oneCommit ? 'one-commit' : 'naive'}-${sync.toLowerCase()}-process`)
  t0 = performance.now()
  let done = 0
  const noop = async (_p: unknown): Promise<void> => undefined
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (;;) {
        if (oneCommit) {
          const ran = database.transaction(() => {
            const [job] = store.lease('work', 1, Date.now(), 30_000)
            if (job === undefined) return false
            store.complete(job.id, job.attempt, { ok: true }, Date.now())
            return true
          })
          if (!ran) return
          await noop(null)
          done++
          continue
        }
        const [job] = store.lease('work', 1, Date.now(), 30_000)
        if (job === undefined) return
        await noop(job.payload)
        store.complete(job.id, job.attempt, { ok: true }, Date.now())
        done++
      }
    }),
  )
  const processed = rate(done, performance.now() - t0)
  const cpuProcess = perOp(await phase.end(), done)
  database.close()
  out({ enqueue_one: enqueueOne, process: processed, cpu_enqueue_one: cpuEnqueueOne, cpu_process: cpuProcess })
}

async function plainjob(): Promise<void> {
  const { better, defineQueue, defineWorker } = await import('plainjob')
  const silent = { error: () => undefined, warn: () => undefined, info: () => undefined, debug: () => undefined }
  const open = (file: string) => defineQueue({ connection: better(new Database(path.join(dir, file))), logger: silent })
  const one = open('one.db')
  let phase = await startPhase()
  let t0 = performance.now()
  for (let i = 0; i < N; i++) one.add('work', payload(i))
  const enqueueOne = rate(N, performance.now() - t0)
  const cpuEnqueueOne = perOp(await phase.end(), N)
  one.close()
  const queue = open('batch.db')
  phase = await startPhase()
  t0 = performance.now()
  for (let i = 0; i < N; i += BATCH) queue.addMany('work', Array.from({ length: Math.min(BATCH, N - i) }, (_, k) => payload(i + k)))
  const enqueueBatch = rate(N, performance.now() - t0)
  const cpuEnqueueBatch = perOp(await phase.end(), N)
  let done = 0
  phase = await startPhase('queue-plainjob-process')
  t0 = performance.now()
  const workers = Array.from({ length: CONCURRENCY }, () =>
    defineWorker('work', async () => undefined, { queue, logger: silent, onCompleted: () => void done++ }),
  )
  for (const w of workers) void w.start()
  await waitFor(() => done >= N)
  const processed = rate(N, performance.now() - t0)
  const cpuProcess = perOp(await phase.end(), N)
  await Promise.all(workers.map((w) => w.stop()))
  queue.close()
  out({ enqueue_one: enqueueOne, enqueue_batch: enqueueBatch, process: processed, cpu_enqueue_one: cpuEnqueueOne, cpu_enqueue_batch: cpuEnqueueBatch, cpu_process: cpuProcess })
}

async function bullmq(): Promise<void> {
  const { Queue, Worker } = await import('bullmq')
  const connection = { host: '127.0.0.1', port: 6379, maxRetriesPerRequest: null }
  const name = `outpost-bench-${process.pid}`
  const queue = new Queue(name, { connection })
  await queue.obliterate({ force: true }).catch(() => undefined)
  const { Redis } = await import('ioredis')
  const redis = new Redis({ host: connection.host, port: connection.port })
  /** Redis's own CPU time so far (INFO cpu, all its threads), in µs: BullMQ's work is half in Redis. */
  const redisCpuUs = async (): Promise<number> => {
    const info = await redis.info('cpu')
    const field = (name: string): number => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? 0)
    return Math.round((field('used_cpu_user') + field('used_cpu_sys')) * 1_000_000)
  }
  let phase = await startPhase()
  let t0 = performance.now()
  for (let i = 0; i < N; i++) await queue.add('work', payload(i))
  const enqueueOne = rate(N, performance.now() - t0)
  const cpuEnqueueOne = perOp(await phase.end(), N)
  await queue.obliterate({ force: true })
  phase = await startPhase()
  t0 = performance.now()
  for (let i = 0; i < N; i += BATCH) await queue.addBulk(Array.from({ length: Math.min(BATCH, N - i) }, (_, k) => ({ name: 'work', data: payload(i + k) })))
  const enqueueBatch = rate(N, performance.now() - t0)
  const cpuEnqueueBatch = perOp(await phase.end(), N)
  let done = 0
  const redis0 = await redisCpuUs()
  phase = await startPhase('queue-bullmq-process')
  t0 = performance.now()
  const worker = new Worker(name, async () => undefined, { connection, concurrency: CONCURRENCY })
  worker.on('completed', () => void done++)
  await waitFor(() => done >= N)
  const processed = rate(N, performance.now() - t0)
  const cpuProcess = perOp(await phase.end(), N)
  const cpuProcessRedis = perOp((await redisCpuUs()) - redis0, N)
  redis.disconnect()
  await worker.close()
  await queue.obliterate({ force: true })
  await queue.close()
  out({ enqueue_one: enqueueOne, enqueue_batch: enqueueBatch, process: processed, cpu_enqueue_one: cpuEnqueueOne, cpu_enqueue_batch: cpuEnqueueBatch, cpu_process: cpuProcess, cpu_process_redis: cpuProcessRedis })
}

const percentiles = (samples: number[]): { p50_us: number; p99_us: number } => {
  samples.sort((a, b) => a - b)
  const pick = (q: number): number => Math.round(samples[Math.min(samples.length - 1, Math.floor(q * samples.length))]! * 1000)
  return { p50_us: pick(0.5), p99_us: pick(0.99) }
}

async function latencyOutpost(): Promise<void> {
  let startedAt = 0
  const dev = outpostDevice('latency.db', 'required', () => void (startedAt = performance.now()))
  await dev.rt.start()
  const samples: number[] = []
  for (let i = 0; i < N; i++) {
    startedAt = 0
    const t0 = performance.now()
    dev.q.enqueue(payload(i))
    await waitFor(() => startedAt > 0)
    samples.push(startedAt - t0)
    await waitFor(() => (dev.rt.stats().queues['bench/work']?.completed ?? 0) > i) // idle again
  }
  await dev.rt.stop()
  dev.database.close()
  out(percentiles(samples.slice(Math.floor(N / 10))))
}

async function latencyBullmq(): Promise<void> {
  const { Queue, Worker } = await import('bullmq')
  const connection = { host: '127.0.0.1', port: 6379, maxRetriesPerRequest: null }
  const name = `outpost-bench-lat-${process.pid}`
  const queue = new Queue(name, { connection })
  let startedAt = 0
  let done = 0
  const worker = new Worker(name, async () => void (startedAt = performance.now()), { connection, concurrency: CONCURRENCY })
  worker.on('completed', () => void done++)
  await worker.waitUntilReady()
  const samples: number[] = []
  for (let i = 0; i < N; i++) {
    startedAt = 0
    const t0 = performance.now()
    await queue.add('work', payload(i))
    await waitFor(() => startedAt > 0)
    samples.push(startedAt - t0)
    await waitFor(() => done > i)
  }
  await worker.close()
  await queue.obliterate({ force: true })
  await queue.close()
  out(percentiles(samples.slice(Math.floor(N / 10))))
}

const run: Record<string, () => Promise<void>> = { outpost, naive: () => naive(), 'one-commit': () => naive(true), plainjob, bullmq, 'latency-outpost': latencyOutpost, 'latency-bullmq': latencyBullmq }
await run[system]!()
