/** One benchmark figure, as `npm run bench -- --json` prints it. */
export interface BenchResult {
  system: string
  workload: string
  concurrency: number
  ops_per_s: number
  p50_us: number | null
  p99_us: number | null
  /**
   * CPU time (user + system, µs) the measured process spent per operation: the process doing
   * the work the figure is about (the device, the queue's or the drain's process), not the
   * broker or the caller beside it. Absent where it is not measured.
   */
  cpu_us_per_op?: number | null
  /** Extra figures (sizes, RSS, …) and notes. */
  extra?: Record<string, number | string>
  /** The CPU limit (cores) the measured processes ran under (`--cpu-quota`), null for none. */
  cpu_quota?: number | null
}

export interface LoadOptions {
  concurrency: number
  durationMs: number
  warmupMs: number
}

/**
 * Runs `call` from `concurrency` loops for a while and reports throughput, latency percentiles
 * and this process's CPU time per call in the measured window (after the warm-up).
 */
export async function runLoad(call: () => Promise<unknown>, opts: LoadOptions): Promise<{ ops_per_s: number; p50_us: number; p99_us: number; cpu_us_per_op: number }> {
  const warmEnd = performance.now() + opts.warmupMs
  await Promise.all(Array.from({ length: opts.concurrency }, async () => {
    while (performance.now() < warmEnd) await call()
  }))
  const samples: number[] = []
  const start = performance.now()
  const end = start + opts.durationMs
  let ops = 0
  const cpu0 = process.cpuUsage()
  await Promise.all(Array.from({ length: opts.concurrency }, async () => {
    for (;;) {
      const t0 = performance.now()
      if (t0 >= end) return
      await call()
      samples.push((performance.now() - t0) * 1000)
      ops++
    }
  }))
  const elapsed = (performance.now() - start) / 1000
  const cpu = process.cpuUsage(cpu0)
  samples.sort((a, b) => a - b)
  const pick = (q: number): number => Math.round(samples[Math.min(samples.length - 1, Math.floor(q * samples.length))] ?? 0)
  return { ops_per_s: Math.round(ops / elapsed), p50_us: pick(0.5), p99_us: pick(0.99), cpu_us_per_op: Math.round(((cpu.user + cpu.system) / Math.max(1, ops)) * 10) / 10 }
}

/** Runs a synchronous function `n` times per batch until `ms` passed; returns operations per second. */
export function rate(fn: () => void, ms = 1_000): number {
  for (let i = 0; i < 10_000; i++) fn() // warm up the JIT
  let ops = 0
  const start = performance.now()
  const end = start + ms
  while (performance.now() < end) {
    for (let i = 0; i < 1_000; i++) fn()
    ops += 1_000
  }
  return Math.round(ops / ((performance.now() - start) / 1000))
}
