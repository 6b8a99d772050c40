// The device under attack (fuzz and hostile-frame tests): hosts `target` (commands with object
// payloads, a probe, a durable queue `work` fed by a binding of `sensor.sample`), subscribes to
// `sensor.reading`, and with `ping` calls `peer.ping` every 100 ms so it receives replies. Its
// SQLite database is the first argument. Logs JSON lines at info to stdout (the tests count them),
// prints `ready` once connected, and stops cleanly on SIGTERM. Run it with --expose-gc, so the
// probe reads memory after a full collection.
import { getHeapStatistics } from 'node:v8'
import { pino } from 'pino'
import { createMqttBridge } from '../../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createRuntime, defineService } from '../../../runtime/index.js'
import { createSqliteInbox, createSqliteOutbox, createSqliteQueueStore, createSqliteStateStore, openDeviceDatabase } from '../../../runtime/stores/sqlite/index.js'
import { peerContract, sensorContract, targetContract } from './fuzz-contracts.js'

const [dbPath, url, deviceId = 'fuzz-dev', mode = ''] = process.argv.slice(2) as [string, string, string?, string?]

const seen = { pingsOk: 0, pingsFailed: 0, readings: 0, samples: 0, lastSample: -1 }
const gc = (globalThis as { gc?: () => void }).gc

const service = defineService(targetContract, {
  uses: [peerContract],
  commands: {
    put: ({ n }) => ({ ok: true as const, n }),
    configure: () => ({ ok: true as const }),
    reset: () => ({ ok: true as const }),
    probe: () => {
      gc?.()
      gc?.()
      const m = process.memoryUsage()
      return { rss: m.rss, heapPhysical: getHeapStatistics().total_physical_size, heapUsed: m.heapUsed, external: m.external, ...seen, received: rt.stats().bridge.received }
    },
  },
  subscriptions: (s) => ({
    readings: s.on(sensorContract, 'reading', () => {
      seen.readings++
    }),
  }),
  bindings: (b) => ({ samples: b.event(sensorContract, 'sample', 'work') }),
  workers: {
    work: ({ at }) => {
      seen.samples++
      seen.lastSample = at
      return { at }
    },
  },
})

const database = openDeviceDatabase({ path: dbPath })
const logger = pino({ level: 'info' })
const rt = createRuntime({
  bridge: createMqttBridge({ url, deviceId, logger, reconnect: { initialMs: 50, maxMs: 500 } }),
  services: [service],
  logger,
  stateStore: createSqliteStateStore(database),
  queueStore: createSqliteQueueStore(database),
  outbox: createSqliteOutbox(database),
  inbox: createSqliteInbox(database),
})
await rt.start({ waitForBroker: true })
process.stdout.write('ready\n')

let stopping = false
if (mode.includes('ping')) {
  const peer = rt.client(peerContract)
  void (async () => {
    for (let n = 0; !stopping; n++) {
      try {
        const r = await peer.ping({ n }, { timeoutMs: 2_000 })
        if (r.n === n) seen.pingsOk++
        else seen.pingsFailed++
      } catch {
        seen.pingsFailed++
      }
      await new Promise((r) => setTimeout(r, 100))
    }
  })()
}

// Lines of counters on demand (SIGUSR2), for a test that wants to know why the device went quiet.
process.on('SIGUSR2', () => {
  const { bridge, queues, ...counters } = rt.stats()
  for (const [name, part] of Object.entries({ seen, counters, bridge, queues })) process.stdout.write(`stats ${name} ${JSON.stringify(part)}\n`)
})
process.on('SIGTERM', () => {
  stopping = true
  void rt.stop({ drainMs: 500 }).then(() => {
    database.close()
    process.exit(0)
  })
})
