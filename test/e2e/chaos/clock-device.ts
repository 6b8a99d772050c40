// Clock helper: a device whose wall clock the test moves from outside (clock-shift.mjs, loaded
// with --import, offsets Date by the number of ms in the file CLOCK_OFFSET_FILE names, read again
// every 20 ms; timers and performance.now stay on real time, as on a device whose RTC is wrong).
// It runs a schedule (`tick` every TICK_MS), a queue of long jobs (`work`: each runs `ms` on its
// first attempt, 50 ms after) and a queue whose jobs ask for a delayed retry once (`flaky`),
// over a real broker, with every event through its SQLite outbox. Lines it prints (JSON, `ev`):
// start / end of an attempt (with `double` when a job starts while this process already runs
// it), tick (an occurrence heard by its own subscription), and pino's log lines. Commands come
// on stdin: `work <n> <ms> [delayMs]`, `flaky <n> <retryDelayMs>`.
import { createInterface } from 'node:readline'
import { pino } from 'pino'
import * as v from 'valibot'
import { createMqttBridge } from '../../../runtime/bridges/mqtt/mqtt-bridge.js'
import { defineContract, defineService } from '../../../runtime/index.js'
import { createRuntimeWithStores } from '../../../runtime/service/runtime-with-stores.js'
import { createSqliteInbox, createSqliteOutbox, createSqliteQueueStore, createSqliteStateStore, openDeviceDatabase } from '../../../runtime/stores/sqlite/index.js'

const [dbPath, url] = process.argv.slice(2) as [string, string]
const TICK_MS = Number(process.env.TICK_MS ?? 250)
const DEVICE_ID = process.env.DEVICE_ID ?? 'clock-dev'

export const clockContract = defineContract({
  name: 'clockdev',
  version: '1',
  events: { tick: v.object({ at: v.number() }) },
  queues: {
    work: {
      payload: v.object({ n: v.number(), ms: v.number() }),
      result: v.object({ n: v.number() }),
      concurrency: 4,
      // Short leases (renewed every 400 ms while a job runs): a lost one shows within a second.
      leaseMs: 1_200,
      timeoutMs: 60_000,
      maxAttempts: 20,
    },
    flaky: {
      payload: v.object({ n: v.number(), delayMs: v.number() }),
      result: v.object({ n: v.number() }),
      leaseMs: 1_200,
      maxAttempts: 5,
      retryWindowMs: 600_000,
    },
  },
})

const out = (o: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(o)}\n`)
const running = new Set<number>()

const service = defineService(clockContract, {
  commands: {},
  schedules: (s) => ({ tick: s.every(TICK_MS, 'tick', (o) => ({ at: o.at })) }),
  // Its own ticks only (another device's come through the broker too).
  subscriptions: (s) => ({ ticks: s.on(clockContract, 'tick', (p, ctx) => void (ctx.event.device === DEVICE_ID && out({ ev: 'tick', at: p.at, id: ctx.event.id }))) }),
  workers: {
    work: async ({ n, ms }, ctx) => {
      const double = running.has(n)
      running.add(n)
      out({ ev: 'start', q: 'work', n, attempt: ctx.job.attempt, double })
      try {
        await new Promise((r) => setTimeout(r, ctx.job.attempt === 1 ? ms : 50))
      } finally {
        if (!double) running.delete(n)
      }
      out({ ev: 'end', q: 'work', n, attempt: ctx.job.attempt, aborted: ctx.signal.aborted })
      return { n }
    },
    flaky: async ({ n, delayMs }, ctx) => {
      out({ ev: 'start', q: 'flaky', n, attempt: ctx.job.attempt })
      if (ctx.job.attempt === 1) return ctx.retry({ delayMs })
      out({ ev: 'end', q: 'flaky', n, attempt: ctx.job.attempt })
      return { n }
    },
  },
})

const log = pino({ level: process.env.LOG_LEVEL ?? 'info' })
const database = openDeviceDatabase({ path: dbPath })
const rt = createRuntimeWithStores({
  bridge: createMqttBridge({ url, deviceId: DEVICE_ID, logger: log, reconnect: { initialMs: 50, maxMs: 300 } }),
  services: [service],
  stateStore: createSqliteStateStore(database),
  queueStore: createSqliteQueueStore(database),
  outbox: createSqliteOutbox(database),
  inbox: createSqliteInbox(database),
  logger: log,
})
await rt.start({ connectInBackground: true })
out({ ev: 'ready' })

createInterface({ input: process.stdin }).on('line', (line) => {
  const [verb, a, b, c] = line.trim().split(/\s+/)
  if (verb === 'work') rt.queue(clockContract, 'work').enqueue({ n: Number(a), ms: Number(b) }, c === undefined ? {} : { delayMs: Number(c) })
  if (verb === 'flaky') rt.queue(clockContract, 'flaky').enqueue({ n: Number(a), delayMs: Number(b) })
  if (verb === 'work' || verb === 'flaky') out({ ev: 'enqueued', q: verb, n: Number(a) })
  if (verb === 'stats') out({ ev: 'stats', stats: rt.stats(), work: rt.queue(clockContract, 'work').metrics(), flaky: rt.queue(clockContract, 'flaky').metrics() })
})
