// Chaos helper: a device that enqueues N numbered jobs (idempotency keys, so every start may
// enqueue them all again), runs them with a worker, and publishes each result event through its
// SQLite outbox to a real broker. Every `n % 97 === 0` job gives up (dead letter). The test kills
// it with SIGKILL at random moments; a last run, started with `drain`, finishes the work, prints
// `drained` with the queue's metrics and stops.
import * as v from 'valibot'
import { createMqttBridge } from '../../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createRuntime, defineContract, defineService } from '../../../runtime/index.js'
import { createSqliteInbox, createSqliteOutbox, createSqliteQueueStore, openDeviceDatabase } from '../../../runtime/stores/sqlite/index.js'

const [dbPath, url, total, mode] = process.argv.slice(2) as [string, string, string, string | undefined]
const N = Number(total)

export const chaosContract = defineContract({
  name: 'chaos',
  version: '1',
  queues: {
    work: {
      payload: v.object({ n: v.number() }),
      result: v.object({ n: v.number() }),
      concurrency: 4,
      // Short leases, so the next start soon takes over what a killed one held.
      leaseMs: 400,
      // Kills cost attempts of jobs that were running or leased ahead; poison jobs fail on their own.
      maxAttempts: 1_000,
    },
  },
})

const service = defineService(chaosContract, {
  commands: {},
  workers: {
    work: async ({ n }, ctx) => {
      await new Promise((r) => setTimeout(r, Math.random() * 4))
      if (n % 97 === 0) return ctx.fail(`job ${n} is poison`)
      return { n }
    },
  },
})

const database = openDeviceDatabase({ path: dbPath })
const rt = createRuntime({
  bridge: createMqttBridge({ url, deviceId: 'chaos-dev', reconnect: { initialMs: 50, maxMs: 200 } }),
  services: [service],
  queueStore: createSqliteQueueStore(database),
  outbox: createSqliteOutbox(database),
  inbox: createSqliteInbox(database),
})
const work = rt.queue(chaosContract, 'work')
for (let i = 0; i < N; i += 500) {
  work.enqueueMany(Array.from({ length: Math.min(500, N - i) }, (_, k) => ({ payload: { n: i + k }, opts: { idempotencyKey: `job-${i + k}` } })))
}
await rt.start()
process.stdout.write('ready\n')

if (mode === 'drain') {
  for (;;) {
    const m = work.metrics()
    if (m.ready + m.delayed + m.leased === 0 && rt.stats().outbox?.entries === 0) {
      await rt.stop()
      database.close()
      process.stdout.write(`drained ${JSON.stringify(m)}\n`)
      process.exit(0)
    }
    await new Promise((r) => setTimeout(r, 50))
  }
}
