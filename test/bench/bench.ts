// `npm run bench`: every figure in one run, each beside the baseline measured in the same run.
// `npm run bench -- --json` prints one JSON object per line; `--only inproc,mqtt,codec,footprint`
// picks sections (`gateway`: the gateway beside aedes and Mosquitto, gateway.ts; `forward` and
// `cloud`: events to JetStream/RabbitMQ and commands from NATS through the gateway); `--quick`
// shortens every measurement. `--cpu-quota 0.5` runs the measured processes in a CPU cgroup
// limited to half a core (cpu-quota.ts); `--cpu-prof DIR` has them write V8 CPU profiles into
// DIR (measured.ts). Rows carry the measured process's CPU µs per operation (`cpu_us_per_op`)
// where it is measured, and Outpost's rows the ratio to each baseline's (`cpu_vs_<baseline>`
// in `extra`).
import { spawnSync } from 'node:child_process'
import { mkdirSync } from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { benchCodec } from './codec.js'
import { createCpuGroup, type CpuGroup } from './cpu-quota.js'
import { benchBacklog, benchCrossProcess, benchDrain, benchInProcessIsolated, firstLine, start, stop } from './cross-process.js'
import { benchFootprint } from './footprint.js'
import { benchGateway } from './gateway.js'
import { benchCloudCommands } from './cloud-commands.js'
import { benchForward } from './forward.js'
import { configureMeasured, cpuQuota, needsOwnProcess } from './measured.js'
import { benchQueue } from './queue.js'
import type { BenchResult } from './measure.js'

const { values } = parseArgs({ options: { json: { type: 'boolean' }, only: { type: 'string' }, quick: { type: 'boolean' }, 'cpu-quota': { type: 'string' }, 'cpu-prof': { type: 'string' } } })
const sections = new Set((values.only ?? 'inproc,mqtt,codec,footprint,gateway,forward,cloud,drain,backlog,queue').split(','))
const quick = values.quick === true

// Which mode runs is said once, first: above the table, or on stderr with --json, whose lines
// stay results only, each with `cpu_quota` (null when unconstrained).
let group: CpuGroup | undefined
let modeLine = 'CPU limit: none (measured processes run unconstrained)'
if (values['cpu-quota'] !== undefined) {
  const cores = Number(values['cpu-quota'])
  if (!(cores > 0) || !Number.isFinite(cores)) {
    process.stderr.write(`bench: --cpu-quota ${values['cpu-quota']}: expected a number of cores above 0, e.g. 0.5\n`)
    process.exit(2)
  }
  const g = createCpuGroup(cores)
  if ('refused' in g) modeLine = g.refused
  else {
    group = g
    modeLine = g.describe
  }
}
const profileDir = values['cpu-prof'] === undefined ? undefined : path.resolve(values['cpu-prof'])
if (profileDir !== undefined) mkdirSync(profileDir, { recursive: true })
configureMeasured({ ...(group === undefined ? {} : { group }), ...(profileDir === undefined ? {} : { profileDir }) })
if (values.json === true) process.stderr.write(`bench: ${modeLine}\n`)
else console.log(modeLine)
if (profileDir !== undefined) process.stderr.write(`bench: CPU profiles of the measured processes go to ${profileDir} (profiling slows them: this run's figures are not comparable)\n`)

/** Baselines per workload: the first is the table's "vs baseline"; Outpost's rows get a CPU ratio to each. */
const BASELINES: Record<string, string[]> = {
  'inproc-command-roundtrip': ['moleculer-0.15-local'],
  'mqtt-command-roundtrip-3proc': ['raw-mqttjs-cbor'],
  'envelope-encode': ['json'],
  'envelope-decode': ['json'],
  'outbox-drain-after-reconnect': ['raw-mqttjs-qos1-publish'],
  'queue-enqueue-one': ['plainjob-0.0.14', 'bullmq-6.7-redis'],
  'queue-enqueue-batch': ['plainjob-0.0.14', 'bullmq-6.7-redis'],
  'queue-process-c8': ['plainjob-0.0.14', 'bullmq-6.7-redis'],
  'queue-process-c8-sync-full': ['one-commit-per-job-sqlite-full'],
  'gateway-qos1-publish-subscribe': ['aedes-plain-memory', 'mosquitto-local'],
  'gateway-connect-storm': ['aedes-plain-memory', 'mosquitto-local'],
  'forward-jetstream': ['raw-jetstream-window256'],
  'forward-jetstream-backlog-drain': ['raw-jetstream-window256'],
  'forward-rabbitmq': ['raw-rabbitmq-window256'],
  'forward-rabbitmq-backlog-drain': ['raw-rabbitmq-window256'],
  'cloud-command-roundtrip': ['outpost-mqtt-direct'],
}
/** A baseline's short name in `cpu_vs_<name>`, as the queue's paired ratios name them. */
const shortName = (system: string): string => (system.startsWith('one-commit') ? 'one_fsync' : system.split('-')[0]!)
const ratioOf = (a: number, b: number): number => Math.round((a / b) * 100) / 100

const results: BenchResult[] = []
const emit = (rs: BenchResult[]): void => {
  for (const r of rs) {
    r.cpu_quota = cpuQuota()
    if (!r.system.startsWith('outpost') || typeof r.cpu_us_per_op !== 'number') continue
    for (const base of BASELINES[r.workload] ?? []) {
      const b = rs.find((x) => x.system === base && x.workload === r.workload && x.concurrency === r.concurrency)
      if (typeof b?.cpu_us_per_op === 'number' && b.cpu_us_per_op > 0) r.extra = { ...r.extra, [`cpu_vs_${shortName(base)}`]: ratioOf(r.cpu_us_per_op, b.cpu_us_per_op) }
    }
  }
  results.push(...rs)
  if (values.json === true) for (const r of rs) process.stdout.write(`${JSON.stringify(r)}\n`)
}

/** The codec section; in a process of its own when measured processes are confined or profiled. */
async function codec(ms: number): Promise<BenchResult[]> {
  if (!needsOwnProcess()) return benchCodec(ms)
  const proc = start('codec.ts', [String(ms)], { measured: true })
  try {
    return JSON.parse(await firstLine(proc, 'codec', 120_000)) as BenchResult[]
  } finally {
    await stop(proc)
  }
}

if (sections.has('inproc')) emit(await benchInProcessIsolated({ durationMs: quick ? 500 : 2_000, warmupMs: quick ? 200 : 500 }, [1, 64], quick ? 1 : 3))
if (sections.has('mqtt')) emit(await benchCrossProcess({ durationMs: quick ? 1_000 : 3_000, warmupMs: quick ? 300 : 1_000 }, [1, 64], quick ? 1 : 3))
if (sections.has('codec')) emit(await codec(quick ? 300 : 1_000))
if (sections.has('footprint')) emit(await benchFootprint(quick ? 1 : 9))
// The disk-bound sections last, the queue first among them, each after the kernel has written
// back what the one before left in the page cache: the million-event backlog leaves ~130 MB
// to write, which otherwise lands in the middle of the next section's commits. The gateway
// (its broker state in SQLite) goes before them.
const settleDisk = (): void => void spawnSync('sync', { stdio: 'ignore' })
if (sections.has('gateway')) {
  settleDisk()
  emit(await benchGateway({ devices: quick ? 200 : 1_000, rounds: quick ? 1 : 3, warmupMs: quick ? 300 : 1_000, durationMs: quick ? 1_000 : 3_000, idleMs: quick ? 500 : 2_000, window: 256, publishers: 4 }))
}
if (sections.has('forward')) {
  settleDisk()
  emit(await benchForward({ events: quick ? 5_000 : 20_000, backlog: quick ? 20_000 : 100_000, rounds: quick ? 1 : 3 }))
}
if (sections.has('ota')) emit(await (await import('./ota.js')).benchOta(quick ? 1 : 3)) // only with --only ota: over the air through the gateway (ota.ts)
if (sections.has('cloud')) emit(await benchCloudCommands({ durationMs: quick ? 1_000 : 3_000, warmupMs: quick ? 300 : 1_000 }, [1, 64], quick ? 1 : 3))
if (sections.has('queue')) {
  settleDisk()
  emit(await benchQueue(20_000, quick ? 1 : 5, quick ? 300 : 2_000))
}
if (sections.has('drain')) {
  settleDisk()
  emit(await benchDrain(quick ? 20_000 : 100_000))
}
if (sections.has('backlog')) {
  settleDisk()
  emit(await benchBacklog(quick ? 100_000 : 1_000_000))
}

if (values.json !== true) {
  const find = (system: string, workload: string, c: number): BenchResult | undefined => results.find((r) => r.system === system && r.workload === workload && r.concurrency === c)
  const ratio = (a: number | null | undefined, b: number | null | undefined): string => (a && b ? `${(a / b).toFixed(2)}×` : '')
  const rows = results.map((r) => {
    const base = BASELINES[r.workload]?.[0]
    const b = base === undefined ? undefined : find(base, r.workload, r.concurrency)
    const cpuRatio = b === undefined ? '' : ratio(r.cpu_us_per_op, b.cpu_us_per_op)
    return {
      workload: r.workload,
      system: r.system,
      c: String(r.concurrency),
      'ops/s': r.ops_per_s ? r.ops_per_s.toLocaleString('en-US') : '',
      'p50 µs': r.p50_us === null ? '' : String(r.p50_us),
      'p99 µs': r.p99_us === null ? '' : String(r.p99_us),
      'vs baseline': b && r.ops_per_s ? `${ratio(r.ops_per_s, b.ops_per_s)} ${base}` : '',
      'cpu µs/op': typeof r.cpu_us_per_op === 'number' ? r.cpu_us_per_op.toFixed(1) : '',
      'cpu vs baseline': cpuRatio,
      extra: r.extra ? Object.entries(r.extra).map(([k, v]) => `${k}=${v}`).join(' ') : '',
    }
  })
  const cols = Object.keys(rows[0] ?? {}) as (keyof (typeof rows)[number])[]
  const width = cols.map((c) => Math.max(c.length, ...rows.map((r) => r[c].length)))
  const line = (cells: string[]): string => cells.map((s, i) => s.padEnd(width[i]!)).join('  ')
  console.log(line(cols))
  console.log(line(width.map((w) => '-'.repeat(w))))
  for (const r of rows) console.log(line(cols.map((c) => r[c])))
}
if (group !== undefined) process.stderr.write(`bench: ${group.throttling()}\n`)
process.exit(0)
