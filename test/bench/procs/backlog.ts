// RSS with a large backlog waiting in the SQLite outbox, beside the same process idle.
// Run with --expose-gc, so both readings are taken after a full collection.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { createEnvelopeCodec, createMessageIdFactory, ENVELOPE_VERSION } from '../../../runtime/index.js'
import { createSqliteOutbox, openDeviceDatabase } from '../../../runtime/stores/sqlite/index.js'

const count = Number(process.argv[2])
const gc = (globalThis as { gc?: () => void }).gc
const rssMb = (): number => {
  gc?.()
  gc?.()
  return Math.round((process.memoryUsage().rss / 1048576) * 10) / 10
}
const dir = mkdtempSync(path.join(tmpdir(), 'outpost-backlog-'))
const database = openDeviceDatabase({ path: path.join(dir, 'device.db') })
const outbox = createSqliteOutbox(database, { limits: { events: { maxBytes: 2 * 1024 * 1024 * 1024, policy: 'reject' } } })
const codec = createEnvelopeCodec()
const ids = createMessageIdFactory()
const idle = rssMb()
const t0 = performance.now()
const fill = database.db.transaction((from: number, to: number) => {
  for (let n = from; n < to; n++) {
    const frame = codec.encode({ v: ENVELOPE_VERSION, kind: 'event', id: ids(), src: 'dev-17', inst: 'i', at: 1_732_350_000_000 + n, service: 'climate', version: '1', name: 'sampled', payload: { deviceId: 'dev-17', temperature: 20 + (n % 50) / 10, humidity: 55, ts: 1_732_350_000_000 + n } })
    outbox.append({ stream: 'events', topic: 'ob/dev-17/evt/climate/1/sampled', frame, retain: false })
  }
})
const batch = Number(process.argv[3] ?? 10_000)
for (let n = 0; n < count; n += batch) fill(n, Math.min(count, n + batch))
const seconds = (performance.now() - t0) / 1000
const backlog = rssMb()
const stats = outbox.stats()
database.close()
rmSync(dir, { recursive: true, force: true })
process.stdout.write(`${JSON.stringify({ ops_per_s: Math.round(count / seconds), idle_rss_mb: idle, backlog_rss_mb: backlog, rss_growth_mb: Math.round((backlog - idle) * 10) / 10, backlog_mb: Math.round(stats.bytes / 1048576) })}\n`)
process.exit(0)
