// Issue 14's command figure (`npm run bench -- --only cloud`): a cloud caller's request over NATS
// (request/reply to the gateway's front end, JSON), through the gateway (allow rules, registry,
// its runtime's MQTT call) to a device process serving `ingest.add`, and back; beside the same
// call made directly over MQTT by an Outpost runtime on the gateway's broker. The gateway and
// both callers run in this process, the device in its own, NATS beside them.
import { randomBytes } from 'node:crypto'
import { connect as natsConnect } from '@nats-io/transport-node'
import { pino } from 'pino'
import { defaultGatewayConfig } from '../../gateway/config/gateway-config.js'
import { startGateway } from '../../gateway/index.js'
import { firstLine, start, stop } from './cross-process.js'
import { runLoad, type BenchResult, type LoadOptions } from './measure.js'
import { systems } from './procs/mqtt-systems.js'
import { payload } from './workload.js'

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
const median = <T>(xs: T[], by: (x: T) => number): T => [...xs].sort((a, b) => by(a) - by(b))[Math.floor(xs.length / 2)]!

/** Each round: a fresh gateway and device; the NATS and the direct MQTT caller in turn at each concurrency. */
export async function benchCloudCommands(load: Omit<LoadOptions, 'concurrency'>, concurrencies: number[], rounds: number): Promise<BenchResult[]> {
  const runs = new Map<string, Awaited<ReturnType<typeof runLoad>>[]>()
  const keep = (system: string, c: number, r: Awaited<ReturnType<typeof runLoad>>): void => {
    const k = `${system}|${c}`
    runs.set(k, [...(runs.get(k) ?? []), r])
  }
  for (let round = 0; round < rounds; round++) {
    const tag = randomBytes(4).toString('hex')
    const subject = `benchcmd${tag}`
    const config = defaultGatewayConfig()
    config.commands = { ...config.commands, nats: { servers: ['127.0.0.1:4222'], subject, queueGroup: `bench-${tag}`, allow: ['#'] } }
    const gw = await startGateway({ config, port: 0, logger: pino({ level: 'silent' }) })
    const device = start('responder.ts', ['outpost', gw.broker.url])
    try {
      await firstLine(device, 'device')
      while (gw.registry.get('device')?.online !== true) await sleep(20)
      const nc = await natsConnect({ servers: '127.0.0.1:4222', noAsyncTraces: true })
      const direct = await systems.outpost.caller(gw.broker.url)
      try {
        const viaNats = async (): Promise<void> => {
          const m = await nc.request(`${subject}.device.ingest.1.add`, JSON.stringify(payload()), { timeout: 10_000 })
          if (m.headers?.get('Outpost-Error')) throw new Error(`command failed: ${m.string()}`)
        }
        await viaNats()
        for (const c of concurrencies) {
          keep('outpost-gateway-nats', c, await runLoad(viaNats, { ...load, concurrency: c }))
          keep('outpost-mqtt-direct', c, await runLoad(direct.call, { ...load, concurrency: c }))
        }
      } finally {
        await direct.close()
        await nc.close()
      }
    } finally {
      await stop(device)
      await gw.close()
    }
  }
  const out: BenchResult[] = []
  for (const c of concurrencies) {
    for (const system of ['outpost-mqtt-direct', 'outpost-gateway-nats']) {
      const rs = runs.get(`${system}|${c}`)!
      const m = median(rs, (r) => r.ops_per_s)
      out.push({ system, workload: 'cloud-command-roundtrip', concurrency: c, ops_per_s: m.ops_per_s, p50_us: m.p50_us, p99_us: m.p99_us, extra: { rounds: rs.map((r) => r.ops_per_s).join('/') } })
    }
  }
  return out
}
