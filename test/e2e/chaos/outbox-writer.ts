// Chaos helper: a device that emits numbered events into its SQLite outbox with no broker
// reachable, printing each number once `emit` returned (committed). The test kills it with
// SIGKILL at random moments and checks the outbox afterwards.
import * as v from 'valibot'
import { createMqttBridge } from '../../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createEnvelopeCodec, createRuntime, defineContract, defineService } from '../../../runtime/index.js'
import { createSqliteOutbox, openDeviceDatabase } from '../../../runtime/stores/sqlite/index.js'

const [dbPath, deadPort] = process.argv.slice(2) as [string, string]
const database = openDeviceDatabase({ path: dbPath })
const outbox = createSqliteOutbox(database, { limits: { events: { maxBytes: 1 << 30, policy: 'reject' } } })
const codec = createEnvelopeCodec()

// Continue after the highest number already stored.
let next = 0
for (let after = 0; ; ) {
  const batch = outbox.peek(after, 1000)
  if (batch.length === 0) break
  for (const e of batch) {
    const d = codec.decode(e.frame)
    if (d.ok) next = Math.max(next, (d.envelope.payload as { n: number }).n + 1)
    after = e.seq
  }
}

const contract = defineContract({
  name: 'writer',
  version: '1',
  commands: { write: { payload: v.object({}), result: v.object({}) } },
  events: { numbered: v.object({ n: v.number() }) },
})
const service = defineService(contract, {
  commands: {
    write: async (_p, ctx) => {
      for (;;) {
        await ctx.emit('numbered', { n: next })
        // Next event only once this number reached the pipe: a write still queued in this
        // process when it is killed would be a committed event the test never heard of.
        await new Promise<void>((resolve) => process.stdout.write(`${next}\n`, () => resolve()))
        next++
      }
    },
  },
})
const rt = createRuntime({ bridge: createMqttBridge({ url: `mqtt://127.0.0.1:${deadPort}`, deviceId: 'writer' }), services: [service], outbox })
process.stdout.write('ready\n')
await rt.client(contract).write({}, { timeoutMs: 3_600_000 })
