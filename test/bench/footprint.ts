// Idle device footprint: RSS and start-to-ready time of the bundled display device (one
// service, connected to the broker) beside a bare `node -e` process.
import { spawn } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { bundleDevice } from '../../build/bundle.js'
import { startMqttBroker } from '../../gateway/broker/mqtt-broker.js'
import type { BenchResult } from './measure.js'
import { confine } from './measured.js'

const ROOT = `${process.cwd()}/` // bin/run-bench.js runs from the repository root

async function rssKb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0)
}

/** Starts a process, waits for a stdout line matching `ready`, idles, then reads its RSS. */
async function measure(args: string[], env: Record<string, string>, ready: RegExp, idleMs: number): Promise<{ readyMs: number; rssMb: number }> {
  const t0 = performance.now()
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] })
  confine(child.pid) // both the bare node and the device are measured processes (--cpu-quota)
  const readyMs = await new Promise<number>((resolve, reject) => {
    let buf = ''
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString()
      if (ready.test(buf)) resolve(performance.now() - t0)
    })
    child.once('exit', (c) => reject(new Error(`exited with ${c} before ready`)))
  })
  await new Promise((r) => setTimeout(r, idleMs))
  const rss = await rssKb(child.pid!)
  const exited = new Promise((r) => child.once('exit', r))
  child.kill('SIGTERM')
  await exited
  return { readyMs, rssMb: rss / 1024 }
}

export async function benchFootprint(runs: number): Promise<BenchResult[]> {
  const bundle = await bundleDevice('display', `${ROOT}dist/bench`, ROOT)
  const broker = await startMqttBroker({ port: 0 })
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
  const bare: { readyMs: number; rssMb: number }[] = []
  const device: { readyMs: number; rssMb: number }[] = []
  try {
    for (let i = 0; i < runs; i++) {
      bare.push(await measure(['-e', "console.log('ready'); setInterval(() => {}, 1 << 30)"], {}, /ready/, 1_000))
      device.push(await measure([bundle.file], { OUTPOST_MQTT_URL: broker.url, OUTPOST_DEVICE_ID: `fp-${i}` }, /"msg":"ready"/, 1_000))
    }
  } finally {
    await broker.close()
  }
  const row = (system: string, xs: { readyMs: number; rssMb: number }[], extra: Record<string, number | string> = {}): BenchResult => ({
    system, workload: 'idle-device-footprint', concurrency: 1, ops_per_s: 0, p50_us: null, p99_us: null,
    extra: { ready_ms: Math.round(median(xs.map((x) => x.readyMs))), rss_mb: Number(median(xs.map((x) => x.rssMb)).toFixed(1)), ...extra },
  })
  return [row('node-bare', bare), row('outpost-device-bundle', device, { bundle_kb: Math.round(bundle.bytes / 1024) })]
}
