// Idle device footprint: RSS and start-to-ready time of the demo devices' bundles (display: one
// service, memory stores; thermo: SQLite, a queue, a schedule) and of the device issue 15's size
// goal names (goal: the thermo without over-the-air flashing, test/helpers/goal-device.ts),
// connected to a broker, beside a bare `node -e` process; and each bundle's size.
import { spawn } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { mkdtemp, rm } from 'node:fs/promises'
import { writeGoalDeviceProject } from '../helpers/goal-device.js'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { buildDevice, stopBundler, type BuiltDevice } from '../../build/index.js'
import { startMqttBroker } from '../../gateway/broker/mqtt-broker.js'
import type { BenchResult } from './measure.js'
import { confine } from './measured.js'

const ROOT = `${process.cwd()}/` // bin/run-bench.js runs from the repository root

async function rssKb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0)
}

/**
 * Starts a process, waits for a stdout line matching `ready` (and, for a device, its `connected to
 * the broker` line: a device is ready once it serves local work, before its connection is up),
 * idles, then reads its RSS.
 */
async function measure(args: string[], env: Record<string, string>, ready: RegExp, idleMs: number): Promise<Sample> {
  const t0 = performance.now()
  // Without NODE_EXTRA_CA_CERTS (set on some machines, not on devices): Node reads the file at
  // every start, ~80 ms here, which would hide the device's own start-up in both figures.
  const { NODE_EXTRA_CA_CERTS: _extraCerts, ...inherited } = process.env
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...inherited, ...env }, stdio: ['ignore', 'pipe', 'inherit'] })
  confine(child.pid) // both the bare node and the device are measured processes (--cpu-quota)
  let connectedMs: number | undefined
  const readyMs = await new Promise<number>((resolve, reject) => {
    let buf = ''
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString()
      if (connectedMs === undefined && buf.includes('"msg":"connected to the broker"')) connectedMs = performance.now() - t0
      if (ready.test(buf)) resolve(performance.now() - t0)
    })
    child.once('exit', (c) => reject(new Error(`exited with ${c} before ready`)))
  })
  await new Promise((r) => setTimeout(r, idleMs))
  const rss = await rssKb(child.pid!)
  const exited = new Promise((r) => child.once('exit', r))
  child.kill('SIGTERM')
  await exited
  return { readyMs, rssMb: rss / 1024, connectedMs }
}

/** Each measurement of a series, and its median. */
type Sample = { readyMs: number; rssMb: number; connectedMs?: number }
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

/**
 * The demo devices' bundles, built as `outpost build` builds them (unsigned), each run `runs`
 * times beside a bare node process, interleaved: ready time and idle RSS (medians), the ready
 * time's ratio to bare node's (the median of each round's ratio; `ready_vs_bare_of_medians`, the
 * ratio of the medians, as reported before session 23) and the RSS over bare node's. The thermo opens its SQLite database (made by a first, unmeasured
 * start: a device restarts far more often than it is first flashed), and the devices start with
 * the compile cache a launcher gives them (used from Node 22.1 on). Sizes are the JavaScript's,
 * minified and gzip-compressed, the addon not counted.
 */
export async function benchFootprint(runs: number): Promise<BenchResult[]> {
  const out = `${ROOT}dist/bench/bundles`
  const unbounded = { minifiedKb: Number.MAX_SAFE_INTEGER, gzipKb: Number.MAX_SAFE_INTEGER }
  const devices = ['display', 'thermo', 'goal']
  const built = new Map<string, BuiltDevice>()
  for (const name of ['display', 'thermo']) built.set(name, await buildDevice(name, { root: ROOT, outDir: out, unsigned: true, budget: unbounded }))
  // The goal device, from a project of its own (removed after the build).
  const goalRoot = await mkdtemp(path.join(tmpdir(), 'outpost-goal-device-'))
  try {
    writeGoalDeviceProject(goalRoot, ROOT)
    built.set('goal', await buildDevice('goal', { root: goalRoot, outDir: out, unsigned: true, budget: unbounded }))
  } finally {
    await rm(goalRoot, { recursive: true, force: true })
  }
  await stopBundler()
  const broker = await startMqttBroker({ port: 0 })
  const dataDir = await mkdtemp(path.join(tmpdir(), 'outpost-footprint-'))
  // One device id each, so that the thermo's later starts open the database its first one made.
  // A compile cache as the launcher gives a device (NODE_COMPILE_CACHE): filled by the first,
  // unmeasured start; Node 22.1 and later start from it, Node 20 ignores it.
  const envOf = (name: string): Record<string, string> => ({
    OUTPOST_MQTT_URL: broker.url, OUTPOST_DEVICE_ID: `fp-${name}`, OUTPOST_DATA_DIR: dataDir, NODE_COMPILE_CACHE: path.join(dataDir, 'compile-cache', name),
  })
  const bare: Sample[] = []
  const device = new Map<string, Sample[]>(devices.map((n) => [n, []]))
  try {
    for (const name of devices) await measure([built.get(name)!.entry], envOf(name), /"msg":"ready"/, 100)
    for (let i = 0; i < runs; i++) {
      bare.push(await measure(['-e', "console.log('ready'); setInterval(() => {}, 1 << 30)"], {}, /ready/, 1_000))
      for (const name of devices) device.get(name)!.push(await measure([built.get(name)!.entry], envOf(name), /"msg":"ready"/, 1_000))
    }
  } finally {
    await broker.close()
    await rm(dataDir, { recursive: true, force: true })
  }
  const bareReady = median(bare.map((x) => x.readyMs))
  const bareRss = median(bare.map((x) => x.rssMb))
  // The ratio is the median of each round's own (the device against the bare start measured just
  // before it): the machine's pace drifts between rounds (a bare start took 23 to 30 ms within
  // one run here), and a ratio of medians taken from different rounds moved with it.
  const paired = (xs: Sample[]): number => median(xs.map((x, i) => x.readyMs / bare[i]!.readyMs))
  const row = (system: string, xs: Sample[], extra: Record<string, number | string> = {}): BenchResult => ({
    system, workload: 'idle-device-footprint', concurrency: 1, ops_per_s: 0, p50_us: null, p99_us: null,
    extra: { ready_ms: Math.round(median(xs.map((x) => x.readyMs))), rss_mb: Number(median(xs.map((x) => x.rssMb)).toFixed(1)), ...extra },
  })
  return [
    row('node-bare', bare),
    ...devices.map((name) => {
      const xs = device.get(name)!
      const b = built.get(name)!
      const top = b.breakdown.slice(0, 6).map((s) => `${s.name} ${(s.bytes / 1024).toFixed(1)}`).join(', ')
      return row(`outpost-${name}-bundle`, xs, {
        ready_vs_bare: Number(paired(xs).toFixed(2)),
        ready_vs_bare_of_medians: Number((median(xs.map((x) => x.readyMs)) / bareReady).toFixed(2)),
        connected_ms: Math.round(median(xs.map((x) => x.connectedMs ?? Number.NaN))),
        rss_over_bare_mb: Number((median(xs.map((x) => x.rssMb)) - bareRss).toFixed(1)),
        bundle_kb: Number((b.bytes / 1024).toFixed(1)),
        gzip_kb: Number((b.gzipBytes / 1024).toFixed(1)),
        biggest_kb: top,
      })
    }),
  ]
}
