// `npm run bench`: every figure in one run, each beside the baseline measured in the same run.
// `npm run bench -- --json` prints one JSON object per line; `--only inproc,mqtt,codec,footprint`
// picks sections; `--quick` shortens every measurement.
import { spawnSync } from 'node:child_process'
import { parseArgs } from 'node:util'
import { benchCodec } from './codec.js'
import { benchBacklog, benchCrossProcess, benchDrain, benchInProcessIsolated } from './cross-process.js'
import { benchFootprint } from './footprint.js'
import { benchQueue } from './queue.js'
import type { BenchResult } from './measure.js'

const { values } = parseArgs({ options: { json: { type: 'boolean' }, only: { type: 'string' }, quick: { type: 'boolean' } } })
const sections = new Set((values.only ?? 'inproc,mqtt,codec,footprint,drain,backlog,queue').split(','))
const quick = values.quick === true
const results: BenchResult[] = []
const emit = (rs: BenchResult[]): void => {
  results.push(...rs)
  if (values.json === true) for (const r of rs) process.stdout.write(`${JSON.stringify(r)}\n`)
}

if (sections.has('inproc')) emit(await benchInProcessIsolated({ durationMs: quick ? 500 : 2_000, warmupMs: quick ? 200 : 500 }, [1, 64], quick ? 1 : 3))
if (sections.has('mqtt')) emit(await benchCrossProcess({ durationMs: quick ? 1_000 : 3_000, warmupMs: quick ? 300 : 1_000 }, [1, 64], quick ? 1 : 3))
if (sections.has('codec')) emit(benchCodec(quick ? 300 : 1_000))
if (sections.has('footprint')) emit(await benchFootprint(quick ? 1 : 3))
// The disk-bound sections last, the queue first among them, each after the kernel has written
// back what the one before left in the page cache: the million-event backlog leaves ~130 MB
// to write, which otherwise lands in the middle of the next section's commits.
const settleDisk = (): void => void spawnSync('sync', { stdio: 'ignore' })
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
  const ratio = (a: number | undefined, b: number | undefined): string => (a && b ? `${(a / b).toFixed(2)}×` : '')
  const baselineOf: Record<string, string> = {
    'inproc-command-roundtrip': 'moleculer-0.15-local',
    'mqtt-command-roundtrip-3proc': 'raw-mqttjs-cbor',
    'envelope-encode': 'json',
    'envelope-decode': 'json',
    'outbox-drain-after-reconnect': 'raw-mqttjs-qos1-publish',
    'queue-enqueue-one': 'plainjob-0.0.14',
    'queue-enqueue-batch': 'plainjob-0.0.14',
    'queue-process-c8': 'plainjob-0.0.14',
    'queue-process-c8-sync-full': 'one-commit-per-job-sqlite-full',
  }
  const rows = results.map((r) => {
    const base = baselineOf[r.workload]
    const b = base === undefined ? undefined : find(base, r.workload, r.concurrency)
    return {
      workload: r.workload,
      system: r.system,
      c: String(r.concurrency),
      'ops/s': r.ops_per_s ? r.ops_per_s.toLocaleString('en-US') : '',
      'p50 µs': r.p50_us === null ? '' : String(r.p50_us),
      'p99 µs': r.p99_us === null ? '' : String(r.p99_us),
      'vs baseline': b && r.ops_per_s ? `${ratio(r.ops_per_s, b.ops_per_s)} ${base}` : '',
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
process.exit(0)
