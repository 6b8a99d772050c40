// A device offline (its broker unreachable) whose jobs report progress often, with the outbox's
// `events` stream small and dropping its oldest when full: the outcome of a job is never among
// what is dropped. Outcomes (completed, dead) have a stream of their own, `results`; a
// job's progress goes with the events. Before, every one of them shared `events`, and the
// progress of later jobs pushed the completions of earlier ones out of the outbox.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import * as v from 'valibot'
import { describe, expect, it } from 'vitest'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createRuntime, defineContract, defineService } from '../../runtime/index.js'
import { createSqliteOutbox, createSqliteQueueStore, openDeviceDatabase } from '../../runtime/stores/sqlite/index.js'
import { createEnvelopeCodec } from '../../runtime/wire/codec.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { until } from '../helpers/wait.js'

const chatty = defineContract({
  name: 'chatty',
  version: '1',
  events: { note: v.object({ text: v.string() }) },
  queues: {
    work: {
      payload: v.object({ n: v.number() }),
      result: v.object({ n: v.number() }),
      progress: v.object({ step: v.number(), pad: v.string() }),
      concurrency: 1,
    },
  },
})

describe('result events in a full outbox', () => {
  const cleanup = cleanupAfterEach()

  it('progress and events that fill their stream push out each other, never a job outcome', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-results-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    const database = openDeviceDatabase({ path: path.join(dir, 'device.db') })
    cleanup(() => database.close())
    const outbox = createSqliteOutbox(database, { limits: { events: { maxBytes: 4_096, policy: 'dropOldest' } } })
    const service = defineService(chatty, {
      commands: {},
      workers: {
        work: async (p, ctx) => {
          for (let step = 0; step < 20; step++) {
            ctx.heartbeat({ step, pad: 'x'.repeat(100) })
            await new Promise((r) => setImmediate(r))
          }
          await ctx.emit('note', { text: `job ${p.n} done` })
          return { n: p.n }
        },
      },
    })
    // A broker nobody listens on: the device is offline, and everything waits in its outbox.
    const bridge = createMqttBridge({ url: 'mqtt://127.0.0.1:9', deviceId: 'chatty-1' })
    const rt = createRuntime({ bridge, services: [service], queueStore: createSqliteQueueStore(database), outbox })
    await rt.start({ connectInBackground: true })
    cleanup(() => rt.stop({ drainMs: 100 }))
    const q = rt.queue(chatty, 'work')
    const JOBS = 30
    for (let n = 0; n < JOBS; n++) q.enqueue({ n })
    await until(() => (rt.stats().queues['chatty/work']?.completed ?? 0) === JOBS, 20_000)

    const stats = rt.stats().outbox!
    // Progress did fill its stream: 30 jobs × 20 reports of over 100 bytes each, in 4 KiB.
    expect(stats.dropped['full:events'] ?? 0).toBeGreaterThan(500)
    expect(stats.dropped['full:results'] ?? 0).toBe(0)
    // Every completion waits in the outbox, in the order the jobs ran.
    const codec = createEnvelopeCodec()
    const waiting = outbox.peek(0, 10_000).map((e) => {
      const d = codec.decode(e.frame)
      if (!d.ok) throw d.error
      return { stream: e.stream, env: d.envelope }
    })
    const completed = waiting.filter((w) => w.env.name === 'work.completed')
    expect(completed.map((w) => (w.env.payload as { output: { n: number } }).output.n)).toEqual(Array.from({ length: JOBS }, (_, n) => n))
    expect(new Set(completed.map((w) => w.stream))).toEqual(new Set(['results']))
    // Progress and emitted events share `events`, which kept its newest within its limit.
    expect(new Set(waiting.filter((w) => w.env.name !== 'work.completed').map((w) => w.stream))).toEqual(new Set(['events']))
    expect(waiting.some((w) => w.env.name === 'note')).toBe(true)
  }, 30_000)

  it('failed attempts of a job retried again and again go with the events, never pushing out another job\'s completion', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-results-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    const database = openDeviceDatabase({ path: path.join(dir, 'device.db') })
    cleanup(() => database.close())
    // Both streams small and dropping their oldest: only what shares a stream can push it out.
    const outbox = createSqliteOutbox(database, { limits: { events: { maxBytes: 4_096, policy: 'dropOldest' }, results: { maxBytes: 8_192, policy: 'dropOldest' } } })
    const flaky = defineContract({
      name: 'flaky',
      version: '1',
      queues: { work: { payload: v.object({ n: v.number() }), result: v.object({ n: v.number() }), maxAttempts: 1_000, backoff: { initialMs: 1, maxMs: 1 } } },
    })
    let tries = 0
    const service = defineService(flaky, {
      commands: {},
      workers: {
        work: ({ n }) => {
          // Job 0 fails 150 times (a service it needs is away), then succeeds; the others at once.
          if (n === 0 && ++tries <= 150) throw new Error('not reachable yet')
          return { n }
        },
      },
    })
    const bridge = createMqttBridge({ url: 'mqtt://127.0.0.1:9', deviceId: 'flaky-1' })
    const rt = createRuntime({ bridge, services: [service], queueStore: createSqliteQueueStore(database), outbox })
    await rt.start({ connectInBackground: true })
    cleanup(() => rt.stop({ drainMs: 100 }))
    const q = rt.queue(flaky, 'work')
    for (let n = 0; n < 5; n++) q.enqueue({ n })
    await until(() => (rt.stats().queues['flaky/work']?.completed ?? 0) === 5, 20_000)
    const codec = createEnvelopeCodec()
    const waiting = outbox.peek(0, 10_000).map((e) => {
      const d = codec.decode(e.frame)
      if (!d.ok) throw d.error
      return { stream: e.stream, name: d.envelope.name, n: (d.envelope.payload as { output?: { n: number } }).output?.n }
    })
    expect(rt.stats().outbox!.dropped['full:events'] ?? 0).toBeGreaterThan(0)
    expect(rt.stats().outbox!.dropped['full:results'] ?? 0).toBe(0)
    expect(waiting.filter((w) => w.name === 'work.completed').map((w) => w.n).sort()).toEqual([0, 1, 2, 3, 4])
    expect(new Set(waiting.filter((w) => w.name === 'work.failed').map((w) => w.stream))).toEqual(new Set(['events']))
  }, 30_000)

  it('a failed attempt whose event the full events stream refuses is tried again on time, not when its lease runs out', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-results-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    const database = openDeviceDatabase({ path: path.join(dir, 'device.db') })
    cleanup(() => database.close())
    const outbox = createSqliteOutbox(database, { limits: { events: { maxBytes: 2_048, policy: 'reject' } } })
    const once = defineContract({
      name: 'once',
      version: '1',
      queues: { work: { payload: v.object({ n: v.number() }), result: v.object({ n: v.number() }), backoff: { initialMs: 1, maxMs: 1 } } },
    })
    const tried = new Set<number>()
    const service = defineService(once, {
      commands: {},
      workers: {
        work: ({ n }) => {
          // Each job fails its first attempt, then succeeds.
          if (!tried.has(n)) {
            tried.add(n)
            throw new Error('first attempt fails')
          }
          return { n }
        },
      },
    })
    const rt = createRuntime({ bridge: createMqttBridge({ url: 'mqtt://127.0.0.1:9', deviceId: 'once-1' }), services: [service], queueStore: createSqliteQueueStore(database), outbox })
    await rt.start({ connectInBackground: true })
    cleanup(() => rt.stop({ drainMs: 100 }))
    const q = rt.queue(once, 'work')
    for (let n = 0; n < 60; n++) q.enqueue({ n })
    // Well within the 30 s lease: the refused `failed` events do not hold the retries back.
    await until(() => q.metrics().completed === 60, 10_000)
    expect(rt.stats().queues['once/work']?.resultsFailed).toBeGreaterThan(0)
  }, 30_000)
})
