// Job queue benchmark (issue 3): Outpost's durable queue beside a naive per-job loop on the same
// SQLite store, plainjob (SQLite) and BullMQ (the local Redis), each system in a fresh process,
// `rounds` times in turn; the figure is the median round. Outpost's rows also carry the ratio to
// each baseline round by round (the two measured seconds apart) and the median of those.
// CPU per job (`cpu_us_per_op`) is the system's own process's, median of the rounds; BullMQ's
// rows also carry Redis's (`cpu_us_per_op_redis`), where half of its work runs.
import type { BenchResult } from './measure.js'
import { firstLine, start, stop } from './cross-process.js'

interface Figures {
  enqueue_one?: number | null
  enqueue_batch?: number
  process?: number
  p50_us?: number
  p99_us?: number
  /** CPU µs per job of the queue's process in each phase (procs/queue.ts). */
  cpu_enqueue_one?: number | null
  cpu_enqueue_batch?: number
  cpu_process?: number
  cpu_process_redis?: number
}

const median = <T>(xs: T[], by: (x: T) => number): T => [...xs].sort((a, b) => by(a) - by(b))[Math.floor(xs.length / 2)]!

/** Runs one system's process and reads its figures. */
async function once(args: string[]): Promise<Figures> {
  const proc = start('queue.ts', args, { measured: true, phased: true })
  try {
    return JSON.parse(await firstLine(proc, `queue ${args.join(' ')}`, 600_000)) as Figures
  } finally {
    await stop(proc)
  }
}

/** Enqueue and processing rates (jobs/s), and enqueue-to-start latency with an idle worker. */
export async function benchQueue(jobs: number, rounds: number, latencySamples: number): Promise<BenchResult[]> {
  // Each Outpost run sits between the baselines it is compared with, so a pair is measured
  // seconds apart: on a busy machine the per-round ratios (`extra`) drift less than the rates.
  const systems: { name: string; args: string[] }[] = [
    { name: 'plainjob-0.0.14', args: ['plainjob', String(jobs)] },
    { name: 'outpost-sqlite', args: ['outpost', String(jobs), 'NORMAL'] },
    { name: 'bullmq-6.7-redis', args: ['bullmq', String(jobs)] },
    { name: 'outpost-sqlite-no-result-events', args: ['outpost', String(jobs), 'NORMAL', 'none'] },
    { name: 'naive-loop-sqlite', args: ['naive', String(jobs), 'NORMAL'] },
    { name: 'one-commit-per-job-sqlite-full', args: ['one-commit', String(jobs), 'FULL'] },
    { name: 'outpost-sqlite-full', args: ['outpost', String(jobs), 'FULL'] },
  ]
  const runs = new Map<string, Figures[]>()
  /** Per round, `system`'s processing rate over `baseline`'s, and their median. */
  const paired = (system: string, baseline: string): Record<string, number | string> => {
    const a = runs.get(system)!
    const b = runs.get(baseline)!
    const ratios = a.map((r, i) => (r.process ?? 0) / (b[i]!.process ?? 1))
    const name = baseline.startsWith('one-commit') ? 'one_fsync' : baseline.split('-')[0]!
    return { [`per_round_vs_${name}`]: ratios.map((x) => x.toFixed(2)).join(' '), [`median_paired_vs_${name}`]: Number(median(ratios, (x) => x).toFixed(2)) }
  }
  const pairs: Record<string, string[]> = {
    'outpost-sqlite': ['plainjob-0.0.14', 'bullmq-6.7-redis'],
    'outpost-sqlite-no-result-events': ['plainjob-0.0.14', 'bullmq-6.7-redis'],
    'outpost-sqlite-full': ['one-commit-per-job-sqlite-full'],
  }
  for (let round = 0; round < rounds; round++) {
    for (const s of systems) runs.set(s.name, [...(runs.get(s.name) ?? []), await once(s.args)])
  }
  /** The median over the rounds of one CPU figure, or null where the system has none. */
  const cpu = (name: string, field: 'cpu_enqueue_one' | 'cpu_enqueue_batch' | 'cpu_process' | 'cpu_process_redis'): number | null => {
    const xs = runs.get(name)!.map((r) => r[field]).filter((x): x is number => typeof x === 'number')
    return xs.length === 0 ? null : median(xs, (x) => x)
  }
  const out: BenchResult[] = []
  const row = (system: string, workload: string, ops: number, cpuPerJob: number | null, extra: Record<string, number | string> = {}): void =>
    void out.push({ system, workload, concurrency: 8, ops_per_s: ops, p50_us: null, p99_us: null, cpu_us_per_op: cpuPerJob, extra })
  for (const s of systems) {
    const rs = runs.get(s.name)!
    const full = s.name.includes('full')
    const proc = median(rs, (r) => r.process ?? 0)
    const redis = cpu(s.name, 'cpu_process_redis')
    const spread = {
      min: Math.min(...rs.map((r) => r.process ?? 0)), max: Math.max(...rs.map((r) => r.process ?? 0)), jobs,
      ...Object.assign({}, ...(pairs[s.name] ?? []).map((b) => paired(s.name, b))),
      ...(redis === null ? {} : { cpu_us_per_op_redis: redis }),
    }
    row(s.name, full ? 'queue-process-c8-sync-full' : 'queue-process-c8', proc.process ?? 0, cpu(s.name, 'cpu_process'), spread)
    if (full || s.name.includes('no-result')) continue
    const one = median(rs, (r) => r.enqueue_one ?? 0).enqueue_one
    if (one != null) row(s.name, 'queue-enqueue-one', one, cpu(s.name, 'cpu_enqueue_one'), { jobs })
    const batch = median(rs, (r) => r.enqueue_batch ?? 0).enqueue_batch
    if (batch !== undefined) row(s.name, 'queue-enqueue-batch', batch, cpu(s.name, 'cpu_enqueue_batch'), { jobs, batch: 1_000 })
  }
  for (const [system, args] of [['outpost-sqlite', ['latency-outpost', String(latencySamples)]], ['bullmq-6.7-redis', ['latency-bullmq', String(latencySamples)]]] as const) {
    const r = await once([...args])
    out.push({ system, workload: 'queue-enqueue-to-start', concurrency: 1, ops_per_s: 0, p50_us: r.p50_us ?? null, p99_us: r.p99_us ?? null, extra: { samples: latencySamples, note: 'idle worker; enqueue → handler start' } })
  }
  return out
}
