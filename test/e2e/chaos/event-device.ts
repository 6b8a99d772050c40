// Chaos helper for the forwarding tests: a device process that emits numbered events
// (`meter@1 reading { n }`) through its SQLite outbox to a broker, `count` in all (continuing
// after the highest number it already emitted when restarted), a few at a time. It prints
// "emitted <count>" once every event is committed to the outbox and "drained" once the outbox is
// empty, i.e. the gateway acknowledged every one.
// argv: <db file> <broker url> <device id> <count> [pauseEveryN] [pauseMs]
import * as v from 'valibot'
import { createMqttBridge } from '../../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createEnvelopeCodec, createRuntime, defineContract, defineService } from '../../../runtime/index.js'
import { createSqliteOutbox, openDeviceDatabase } from '../../../runtime/stores/sqlite/index.js'
import { pino } from 'pino'

const [dbPath, url, deviceId, countArg, everyArg, pauseArg] = process.argv.slice(2) as [string, string, string, string, string?, string?]
const count = Number(countArg)
const every = Number(everyArg ?? 50)
const pauseMs = Number(pauseArg ?? 5)
const database = openDeviceDatabase({ path: dbPath })
const outbox = createSqliteOutbox(database, { limits: { events: { maxBytes: 1 << 30, policy: 'reject' } } })
const codec = createEnvelopeCodec()

// Continue after the highest number still in the outbox, or recorded as emitted before.
database.db.exec('CREATE TABLE IF NOT EXISTS emitted (n INTEGER NOT NULL)')
let next = (database.db.prepare('SELECT max(n) FROM emitted').pluck().get() as number | null) ?? 0
for (let after = 0; ; ) {
  const batch = outbox.peek(after, 1000)
  if (batch.length === 0) break
  for (const e of batch) {
    const d = codec.decode(e.frame)
    if (d.ok) next = Math.max(next, (d.envelope.payload as { n: number }).n)
    after = e.seq
  }
}

export const meter = defineContract({
  name: 'meter',
  version: '1',
  commands: { read: { payload: v.object({ from: v.optional(v.string()) }), result: v.object({ device: v.string(), next: v.number() }) } },
  events: { reading: v.object({ n: v.number() }) },
})
let emitting: Promise<void> | undefined
const service = defineService(meter, {
  commands: {
    read: (_p, ctx) => {
      emitting ??= (async () => {
        while (next < count) {
          const n = next + 1
          await ctx.emit('reading', { n })
          database.db.prepare('INSERT INTO emitted (n) VALUES (?)').run(n)
          next = n
          if (n % every === 0) await new Promise((r) => setTimeout(r, pauseMs))
        }
      })()
      return { device: ctx.deviceId, next }
    },
  },
})
const logger = pino({ level: 'warn' }, pino.destination(2))
const rt = createRuntime({ bridge: createMqttBridge({ url, deviceId, logger, reconnect: { initialMs: 50, maxMs: 500 } }), services: [service], outbox, logger })
await rt.start()
process.stdout.write('ready\n')
// Starts its own emitting (the command is only a way to reach the service's context).
await rt.client(meter).read({}, { device: deviceId })
await emitting
process.stdout.write(`emitted ${count}\n`)
for (;;) {
  if ((rt.stats().outbox?.entries ?? 1) === 0) break
  await new Promise((r) => setTimeout(r, 50))
}
process.stdout.write('drained\n')
process.once('SIGTERM', () => void rt.stop({ drainMs: 500 }).then(() => process.exit(0)))
