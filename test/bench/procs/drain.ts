// Outbox drain benchmark process: `raw` publishes N QoS 1 messages with a bare mqtt.js client
// (window 128, as the pump); `outpost` fills a SQLite outbox with N events while offline, then
// connects and drains it. Prints {ops_per_s, ...} for the drain, plus append rate and RSS, and
// this process's CPU time per event while draining (cpu_us_per_op) and, for Outpost, while
// appending (append_cpu_us_per_op). With the bench's --cpu-prof, the drain is profiled on its own.
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Encoder } from 'cbor-x'
import mqtt from 'mqtt'
import * as v from 'valibot'
import { createMqttBridge } from '../../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createRuntime, defineContract, defineService } from '../../../runtime/index.js'
import { createSqliteOutbox, openDeviceDatabase } from '../../../runtime/stores/sqlite/index.js'
import { perOp, startPhase } from './phase-profile.js'

const [system, url, countArg] = process.argv.slice(2) as ['raw' | 'outpost', string, string]
const count = Number(countArg)
const WINDOW = 128
const rssMb = (): number => Math.round((process.memoryUsage().rss / 1048576) * 10) / 10
const reading = (i: number) => ({ deviceId: 'dev-17', temperature: 20 + (i % 50) / 10, humidity: 55, ts: 1_732_350_000_000 + i })

async function raw(): Promise<void> {
  const enc = new Encoder({ useRecords: false })
  const c = await mqtt.connectAsync(url, { clientId: 'raw-drain' })
  ;(c.stream as net.Socket).setNoDelay?.(true)
  const phase = await startPhase('drain-raw')
  const t0 = performance.now()
  let sent = 0
  let acked = 0
  await new Promise<void>((resolve) => {
    const more = (): void => {
      while (sent < count && sent - acked < WINDOW) {
        const i = sent++
        c.publish('bench/drain/raw', enc.encode(reading(i)) as Buffer, { qos: 1 }, () => {
          acked++
          if (acked === count) resolve()
          else more()
        })
      }
    }
    more()
  })
  const s = (performance.now() - t0) / 1000
  const cpu = await phase.end()
  await c.endAsync()
  out({ ops_per_s: Math.round(count / s), seconds: Math.round(s * 100) / 100, cpu_us_per_op: perOp(cpu, count) })
}

async function outpost(): Promise<void> {
  const contract = defineContract({
    name: 'climate',
    version: '1',
    commands: { fill: { payload: v.object({ n: v.number() }), result: v.object({}) } },
    events: { sampled: v.object({ deviceId: v.string(), temperature: v.number(), humidity: v.number(), ts: v.number() }) },
  })
  const service = defineService(contract, {
    commands: {
      fill: async ({ n }, ctx) => {
        for (let i = 0; i < n; i++) await ctx.emit('sampled', reading(i))
        return {}
      },
    },
  })
  const dir = mkdtempSync(path.join(tmpdir(), 'outpost-drain-'))
  const db = openDeviceDatabase({ path: path.join(dir, 'device.db') })
  // Fill while not started (offline: the runtime has not connected), then start and drain.
  const bridge = createMqttBridge({ url, deviceId: 'drainer', reconnect: { initialMs: 10, maxMs: 50 } })
  const rt = createRuntime({ bridge, services: [service], outbox: createSqliteOutbox(db), outboxWindow: WINDOW })
  const idleRss = rssMb()
  const append = await startPhase()
  const t0 = performance.now()
  await rt.client(contract).fill({ n: count }, { timeoutMs: 3_600_000 }) // local dispatch, no broker involved
  const appendS = (performance.now() - t0) / 1000
  const appendCpu = await append.end()
  const backlogRss = rssMb()
  const phase = await startPhase('drain-outpost')
  const t1 = performance.now()
  await rt.start({ waitForBroker: true })
  while ((rt.stats().outbox?.entries ?? 0) > 0) await new Promise((r) => setTimeout(r, 5))
  const s = (performance.now() - t1) / 1000
  const cpu = await phase.end()
  await rt.stop({ drainMs: 500 })
  db.close()
  rmSync(dir, { recursive: true, force: true })
  out({ ops_per_s: Math.round(count / s), seconds: Math.round(s * 100) / 100, cpu_us_per_op: perOp(cpu, count), append_per_s: Math.round(count / appendS), append_cpu_us_per_op: perOp(appendCpu, count), idle_rss_mb: idleRss, backlog_rss_mb: backlogRss })
}

function out(r: Record<string, number>): void {
  process.stdout.write(`${JSON.stringify(r)}\n`)
  process.exit(0)
}

await (system === 'raw' ? raw() : outpost())
