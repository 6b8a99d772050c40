// Helper device for the offline test: a schedule emits `sample` every 200 ms, a binding turns each
// sample into a job of `digest`, the worker's result goes out as `digest.completed` through the
// SQLite outbox. Prints its counters as a JSON line every 100 ms; stops cleanly on SIGTERM.
import * as v from 'valibot'
import { createMqttBridge } from '../../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createRuntime, defineContract, defineService } from '../../../runtime/index.js'
import { createSqliteInbox, createSqliteOutbox, createSqliteQueueStore, createSqliteStateStore, openDeviceDatabase } from '../../../runtime/stores/sqlite/index.js'

const [dbPath, url] = process.argv.slice(2) as [string, string]

const sensor = defineContract({
  name: 'sensor',
  version: '1',
  events: { sample: v.object({ at: v.number() }) },
  queues: { digest: { payload: v.object({ at: v.number() }), result: v.object({ at: v.number(), doubled: v.number() }) } },
})
const service = defineService(sensor, {
  commands: {},
  schedules: (s) => ({ tick: s.every(200, 'sample', (o) => ({ at: o.at })) }),
  bindings: (b) => ({ samples: b.event(sensor, 'sample', 'digest', { device: 'chain-1' }) }),
  workers: { digest: ({ at }) => ({ at, doubled: at * 2 }) },
})

const database = openDeviceDatabase({ path: dbPath })
const rt = createRuntime({
  bridge: createMqttBridge({ url, deviceId: 'chain-1', reconnect: { initialMs: 50, maxMs: 250 } }),
  services: [service],
  stateStore: createSqliteStateStore(database),
  queueStore: createSqliteQueueStore(database),
  outbox: createSqliteOutbox(database),
  inbox: createSqliteInbox(database),
})
await rt.start()
const timer = setInterval(() => {
  const s = rt.stats()
  process.stdout.write(`${JSON.stringify({ fired: s.schedules.fired, completed: s.queues['sensor/digest']?.completed ?? 0, outbox: s.outbox?.entries ?? 0 })}\n`)
}, 100)
process.on('SIGTERM', () => {
  clearInterval(timer)
  void rt.stop({ drainMs: 1_000 }).then(() => {
    database.close()
    process.exit(0)
  })
})
