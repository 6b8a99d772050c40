// Chaos helper: a device that takes `prod.tick` events two ways, a subscription (prints `S <n>`)
// and a binding to a queue whose worker takes a while (prints `J <n>` as a job begins), with its
// database in `dbPath`. SIGTERM stops it gracefully: the runtime waits for the running job, and
// events keep arriving meanwhile. Prints `ready` once started and `stopped` at the end.
import * as v from 'valibot'
import { createMqttBridge } from '../../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createRuntime, defineContract, defineService } from '../../../runtime/index.js'
import { createSqliteInbox, createSqliteOutbox, createSqliteQueueStore, openDeviceDatabase } from '../../../runtime/stores/sqlite/index.js'

const [dbPath, url] = process.argv.slice(2) as [string, string]

const prod = defineContract({ name: 'prod', version: '1', events: { tick: v.object({ n: v.number() }) } })
const cons = defineContract({
  name: 'cons',
  version: '1',
  queues: { work: { payload: v.object({ n: v.number() }), result: v.object({}), concurrency: 16, prefetch: 0 } },
})

const service = defineService(cons, {
  commands: {},
  subscriptions: (s) => ({ seen: s.on(prod, 'tick', ({ n }) => void process.stdout.write(`S ${n}\n`)) }),
  bindings: (b) => ({ jobs: b.event(prod, 'tick', 'work') }),
  workers: {
    work: async ({ n }) => {
      process.stdout.write(`J ${n}\n`)
      await new Promise((r) => setTimeout(r, 400))
      return {}
    },
  },
})

const database = openDeviceDatabase({ path: dbPath })
const rt = createRuntime({
  bridge: createMqttBridge({ url, deviceId: 'stop-b', reconnect: { initialMs: 50, maxMs: 200 } }),
  services: [service],
  queueStore: createSqliteQueueStore(database),
  outbox: createSqliteOutbox(database),
  inbox: createSqliteInbox(database),
})
await rt.start({ waitForBroker: true })
process.stdout.write('ready\n')
process.once('SIGTERM', () => {
  void rt.stop({ drainMs: 5_000 }).then(() => {
    database.close()
    process.stdout.write('stopped\n')
    process.exit(0)
  })
})
