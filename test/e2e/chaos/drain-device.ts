// Chaos helper: a device that drains a SQLite outbox backlog to an MQTT broker over the
// transport's own QoS 1 publishes (the outbox pump, callerResends). Started with `fill <n>` it
// first stores n numbered entries. The test kills it with SIGKILL mid-drain and starts it again.
import { pino } from 'pino'
import { createMqttBridge } from '../../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createOutboxPump } from '../../../runtime/outbox/outbox-pump.js'
import { createSqliteOutbox, openDeviceDatabase } from '../../../runtime/stores/sqlite/index.js'

const [dbPath, url, mode, count] = process.argv.slice(2) as [string, string, string | undefined, string | undefined]
const database = openDeviceDatabase({ path: dbPath })
const outbox = createSqliteOutbox(database)
if (mode === 'fill') {
  const n = Number(count)
  database.db.transaction(() => {
    for (let i = 1; i <= n; i++) outbox.append({ stream: 'events', topic: 'drain/dev/e', frame: Buffer.from(String(i)), retain: false })
  })()
}
process.stdout.write(`entries ${outbox.stats().entries}\n`)
const bridge = createMqttBridge({ url, deviceId: 'drain-dev', reconnect: { initialMs: 20, maxMs: 100 } })
createOutboxPump({ outbox, bridge, log: pino({ level: 'silent' }) })
await bridge.connect()
process.stdout.write('connected\n')
const timer = setInterval(() => {
  const left = outbox.stats().entries
  process.stdout.write(`left ${left}\n`)
  if (left === 0) process.stdout.write('drained\n')
}, 100)
process.on('SIGTERM', () => {
  clearInterval(timer)
  void bridge.close({ drainMs: 100 }).then(() => {
    database.close()
    process.exit(0)
  })
})
