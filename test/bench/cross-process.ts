// Command round trip across three processes (caller, device, broker) over aedes on loopback.
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import type { BenchResult, LoadOptions } from './measure.js'
import { confine, measuredLaunch } from './measured.js'
import type { SystemName } from './procs/mqtt-systems.js'

// bin/run-bench.js runs from the repository root and has built the processes' scripts
// (plain JavaScript, as a device would run; see test/bench/build.js).
const ROOT = process.cwd()
const PROCS = 'test/bench/.build/procs'

/** How a bench process is started. */
export interface StartOptions {
  nodeFlags?: string[]
  /**
   * The process whose work a figure is about (not a broker or a caller): it runs under
   * `--cpu-quota`'s CPU limit and is profiled with `--cpu-prof` (see measured.ts).
   */
  measured?: boolean
  /** A measured process that profiles its measured phase itself (procs/phase-profile.ts). */
  phased?: boolean
}

/** Starts a built script of test/bench/procs with its stdout piped. */
export function start(script: string, args: string[], opts: StartOptions = {}): ChildProcess {
  const launch = opts.measured === true ? measuredLaunch(opts.phased === true) : { nodeFlags: [], env: {} }
  const child = spawn(process.execPath, [...(opts.nodeFlags ?? []), ...launch.nodeFlags, `${PROCS}/${script.replace(/\.ts$/, '.js')}`, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...launch.env },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  // Moved before it has loaded its first module (node takes tens of ms to get there).
  if (opts.measured === true) confine(child.pid)
  return child
}

export function firstLine(child: ChildProcess, what: string, timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = ''
    const t = setTimeout(() => reject(new Error(`${what}: no output in ${timeoutMs} ms`)), timeoutMs)
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString()
      const nl = buf.indexOf('\n')
      if (nl >= 0) {
        clearTimeout(t)
        resolve(buf.slice(0, nl))
      }
    })
    child.once('exit', (code) => {
      clearTimeout(t)
      reject(new Error(`${what} exited with ${code}`))
    })
  })
}

export async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return
  const exited = new Promise<void>((r) => child.once('exit', () => r()))
  child.kill('SIGTERM')
  const t = setTimeout(() => child.kill('SIGKILL'), 5_000)
  await exited
  clearTimeout(t)
}

/** CPU time (user + system) a process has used so far, in microseconds. */
export function cpuUs(pid: number | undefined): number {
  if (pid === undefined) return 0
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
  return ((Number(fields[11]) + Number(fields[12])) * 1_000_000) / 100 // clock ticks (100/s) → µs
}

const LABEL: Record<SystemName, string> = { raw: 'raw-mqttjs-cbor', outpost: 'outpost-mqtt', moleculer: 'moleculer-0.15-mqtt' }

/**
 * Measures each system at each concurrency with a fresh broker and device process, `rounds`
 * times in turn, reporting the median round (by throughput) and the spread.
 */
export async function benchCrossProcess(load: Omit<LoadOptions, 'concurrency'>, concurrencies: number[], rounds = 3): Promise<BenchResult[]> {
  const systems: SystemName[] = ['raw', 'outpost', 'moleculer']
  const runs = new Map<string, { ops_per_s: number; p50_us: number; p99_us: number; cpu_us_per_op: number; extra: Record<string, number> }[]>()
  for (let round = 0; round < rounds; round++) {
    for (const concurrency of concurrencies) {
      for (const system of systems) {
        const broker = start('broker.ts', [])
        try {
          const { url } = JSON.parse(await firstLine(broker, 'broker')) as { url: string }
          const device = start('responder.ts', [system, url], { measured: true })
          try {
            await firstLine(device, `${system} responder`)
            const caller = start('caller.ts', [system, url, String(concurrency), String(load.durationMs), String(load.warmupMs)])
            const before = { device: cpuUs(device.pid), broker: cpuUs(broker.pid) }
            const r = JSON.parse(await firstLine(caller, `${system} caller`, 120_000)) as { ops_per_s: number; p50_us: number; p99_us: number; cpu_us: number; ops: number }
            const perOp = (x: number): number => Math.round((x / r.ops) * 10) / 10
            const extra = {
              cpu_us_per_op_device: perOp(cpuUs(device.pid) - before.device),
              cpu_us_per_op_broker: perOp(cpuUs(broker.pid) - before.broker),
              cpu_us_per_op_caller: perOp(r.cpu_us),
            }
            await stop(caller)
            const key = `${system}|${concurrency}`
            runs.set(key, [...(runs.get(key) ?? []), { ops_per_s: r.ops_per_s, p50_us: r.p50_us, p99_us: r.p99_us, cpu_us_per_op: extra.cpu_us_per_op_device, extra }])
          } finally {
            await stop(device)
          }
        } finally {
          await stop(broker)
        }
      }
    }
  }
  const out: BenchResult[] = []
  for (const system of systems) {
    for (const concurrency of concurrencies) {
      const rs = [...runs.get(`${system}|${concurrency}`)!].sort((a, b) => a.ops_per_s - b.ops_per_s)
      const m = rs[Math.floor(rs.length / 2)]!
      // The device is the measured process; its CPU per call is that of the median round.
      out.push({ system: LABEL[system], workload: 'mqtt-command-roundtrip-3proc', concurrency, ops_per_s: m.ops_per_s, p50_us: m.p50_us, p99_us: m.p99_us, cpu_us_per_op: m.cpu_us_per_op, extra: { ...m.extra, rounds, min_ops_per_s: rs[0]!.ops_per_s, max_ops_per_s: rs.at(-1)!.ops_per_s } })
    }
  }
  return out
}

/**
 * Outbox drain: N events queued while offline, delivered after connecting, vs a bare mqtt.js QoS 1
 * publisher. CPU per event is the drain process's while draining; the broker's (whole run: it
 * has nothing else to do) is in `extra`.
 */
export async function benchDrain(count: number): Promise<BenchResult[]> {
  const out: BenchResult[] = []
  for (const system of ['raw', 'outpost'] as const) {
    const broker = start('broker.ts', [])
    try {
      const { url } = JSON.parse(await firstLine(broker, 'broker')) as { url: string }
      const brokerCpu0 = cpuUs(broker.pid)
      const proc = start('drain.ts', [system, url, String(count)], { measured: true, phased: true })
      const r = JSON.parse(await firstLine(proc, `${system} drain`, 600_000)) as Record<string, number>
      await stop(proc)
      const brokerCpu = Math.round(((cpuUs(broker.pid) - brokerCpu0) / count) * 10) / 10
      const { ops_per_s, cpu_us_per_op, ...extra } = r
      out.push({ system: system === 'raw' ? 'raw-mqttjs-qos1-publish' : 'outpost-sqlite-outbox', workload: 'outbox-drain-after-reconnect', concurrency: 128, ops_per_s: ops_per_s!, p50_us: null, p99_us: null, cpu_us_per_op: cpu_us_per_op ?? null, extra: { events: count, ...extra, cpu_us_per_op_broker: brokerCpu } })
    } finally {
      await stop(broker)
    }
  }
  return out
}

/** RSS of a device process with `count` events waiting in its SQLite outbox, beside the same process idle. */
export async function benchBacklog(count: number): Promise<BenchResult[]> {
  const proc = start('backlog.ts', [String(count)], { nodeFlags: ['--expose-gc'], measured: true })
  const r = JSON.parse(await firstLine(proc, 'backlog', 600_000)) as Record<string, number>
  await stop(proc)
  const { ops_per_s, ...extra } = r
  return [{ system: 'outpost-sqlite-outbox', workload: 'outbox-backlog-memory', concurrency: 1, ops_per_s: ops_per_s!, p50_us: null, p99_us: null, extra: { events: count, ...extra, note: 'ops_per_s = batched appends (10k per transaction)' } }]
}

/**
 * In-process round trip: every (system, concurrency) measured in a fresh process, `rounds` times
 * in turn, reporting the median round and the spread.
 */
export async function benchInProcessIsolated(load: Omit<LoadOptions, 'concurrency'>, concurrencies: number[], rounds = 3): Promise<BenchResult[]> {
  const systems = ['outpost-memory', 'outpost-local', 'moleculer-0.15-local', 'purista-1.11']
  const runs = new Map<string, { ops_per_s: number; p50_us: number; p99_us: number; cpu_us_per_op: number }[]>()
  for (let round = 0; round < rounds; round++) {
    for (const concurrency of concurrencies) {
      for (const system of systems) {
        const proc = start('inproc.ts', [system, String(concurrency), String(load.durationMs), String(load.warmupMs)], { measured: true })
        const r = JSON.parse(await firstLine(proc, `${system} in-process`, 120_000)) as { ops_per_s: number; p50_us: number; p99_us: number; cpu_us_per_op: number }
        await stop(proc)
        const key = `${system}|${concurrency}`
        runs.set(key, [...(runs.get(key) ?? []), r])
      }
    }
  }
  const out: BenchResult[] = []
  for (const system of systems) {
    for (const concurrency of concurrencies) {
      const rs = [...runs.get(`${system}|${concurrency}`)!].sort((a, b) => a.ops_per_s - b.ops_per_s)
      const median = rs[Math.floor(rs.length / 2)]!
      out.push({ system, workload: 'inproc-command-roundtrip', concurrency, ...median, extra: { rounds, min_ops_per_s: rs[0]!.ops_per_s, max_ops_per_s: rs.at(-1)!.ops_per_s } })
    }
  }
  return out
}
