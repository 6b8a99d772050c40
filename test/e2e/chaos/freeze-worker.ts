// Chaos helper: a device with slow jobs, several leased ahead of the one running, that the test
// stops (SIGSTOP) for longer than a lease and lets go on (SIGCONT), several times. It prints
// `start <n> <attempt>` as each attempt begins and, once no job is left, `done` with the queue's
// metrics and its dead letters, then stops.
import * as v from 'valibot'
import { createMemoryBridge, createMemoryHub, createRuntime, defineContract, defineService } from '../../../runtime/index.js'
import { createSqliteOutbox, createSqliteQueueStore, openDeviceDatabase } from '../../../runtime/stores/sqlite/index.js'

const [dbPath, total] = process.argv.slice(2) as [string, string]
const N = Number(total)

const frozen = defineContract({
  name: 'frozen',
  version: '1',
  queues: {
    work: {
      payload: v.object({ n: v.number() }),
      result: v.object({ n: v.number() }),
      concurrency: 1,
      prefetch: 6,
      leaseMs: 600,
      maxAttempts: 2,
    },
  },
})

const service = defineService(frozen, {
  commands: {},
  workers: {
    work: async ({ n }, ctx) => {
      process.stdout.write(`start ${n} ${ctx.job.attempt}\n`)
      await new Promise((r) => setTimeout(r, 250))
      return { n }
    },
  },
})

const database = openDeviceDatabase({ path: dbPath })
const rt = createRuntime({
  bridge: createMemoryBridge({ hub: createMemoryHub(), deviceId: 'frozen-1' }),
  services: [service],
  queueStore: createSqliteQueueStore(database),
  outbox: createSqliteOutbox(database),
})
const work = rt.queue(frozen, 'work')
work.enqueueMany(Array.from({ length: N }, (_, n) => ({ payload: { n } })))
await rt.start()
process.stdout.write('ready\n')
for (;;) {
  const m = work.metrics()
  if (m.ready + m.delayed + m.leased === 0) {
    const dead = work.listDead().map((j) => ({ n: (j.payload as { n: number }).n, attempt: j.attempt, code: j.errorCode }))
    await rt.stop()
    database.close()
    process.stdout.write(`done ${JSON.stringify({ completed: m.completed, dead })}\n`)
    process.exit(0)
  }
  await new Promise((r) => setTimeout(r, 50))
}
