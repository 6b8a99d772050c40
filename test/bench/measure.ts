/** One benchmark figure, as `npm run bench -- --json` prints it. */
export interface BenchResult {
  system: string
  workload: string
  concurrency: number
  ops_per_s: number
  p50_us: number | null
  p99_us: number | null
  /** Extra figures (sizes, RSS, …) and notes. */
  extra?: Record<string, number | string>
}

export interface LoadOptions {
  concurrency: number
  durationMs: number
  warmupMs: number
}

/** Runs `call` from `concurrency` loops for a while and reports throughput and latency percentiles. */
export async function runLoad(call: () => Promise<unknown>, opts: LoadOptions): Promise<{ ops_per_s: number; p50_us: number; p99_us: number }> {
  const warmEnd = performance.now() + opts.warmupMs
  await Promise.all(Array.from({ length: opts.concurrency }, async () => {
    while (performance.now() < warmEnd) await call()
  }))
  const samples: number[] = []
  const start = performance.now()
  const end = start + opts.durationMs
  let ops = 0
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
  samples.sort((a, b) => a - b)
  const pick = (q: number): number => Math.round(samples[Math.min(samples.length - 1, Math.floor(q * samples.length))] ?? 0)
  return { ops_per_s: Math.round(ops / elapsed), p50_us: pick(0.5), p99_us: pick(0.99) }
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
