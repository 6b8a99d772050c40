// Gateway benchmark (issue 13), in one run:
// - QoS 1 publish → subscriber throughput through Outpost's gateway with authentication, ACL and
//   SQLite broker persistence on, beside plain aedes with its in-memory persistence and beside
//   Mosquitto on this machine (127.0.0.1:1883, a system service); ratios per round and their
//   median (goal: ≥ 0.7× plain aedes). A gateway with all of that off, and Outpost's broker
//   alone (startMqttBroker, as procs/broker.ts runs it: no monitor, no auth), are measured too,
//   to show where the difference lies.
// - Connect storm: `devices` devices logging in at once, time until all are connected, and the
//   broker's RSS idle, at its peak and with all of them connected.
// Every broker but Mosquitto runs fresh in its own measured process (procs/gateway-broker.ts);
// the clients are plain MQTT.js clients in a process of their own (procs/gateway-load.ts,
// procs/gateway-storm.ts). CPU per operation is the broker's.
import { spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import mqtt from 'mqtt'
import { cpuUs, firstLine, start, stop } from './cross-process.js'
import type { BenchResult } from './measure.js'
import { publisherId, SECRETS_FILE, stormId, SUBSCRIBER_ID, type GatewayMode } from './procs/gateway-shared.js'

const ROOT = process.cwd() // bin/run-bench.js runs from the repository root

export interface GatewayBenchOptions {
  /** Devices in the connect storm (1,000 in a full run). */
  devices: number
  /** Rounds of each figure; each round runs every system in turn, the figure is the median round. */
  rounds: number
  warmupMs: number
  durationMs: number
  /** How long a broker idles before its RSS is read (after start, and after the storm). */
  idleMs: number
  /** Messages on their way that the subscriber has not received, at most. */
  window: number
  publishers: number
}

/** A broker as the section runs it. */
interface System {
  name: string
  /** Starts it (or finds it running) and says where it listens. */
  start(): Promise<Running>
  /** Secrets for the clients, when it asks for them. */
  secretsFile?: string
  extra: Record<string, number | string>
  /** Said on its throughput row only. */
  loadNote?: string
}

interface Running {
  url: string
  pid: number | undefined
  /** Started by the section (fresh); false for Mosquitto, which was running before and goes on. */
  ours: boolean
  stop(): Promise<void>
}

const THROUGHPUT = 'gateway-qos1-publish-subscribe'
const STORM = 'gateway-connect-storm'
const AEDES = 'aedes-plain-memory'
const MOSQUITTO = 'mosquitto-local'
const MOSQUITTO_URL = process.env.OUTPOST_BENCH_MOSQUITTO_URL ?? 'mqtt://127.0.0.1:1883'

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
const median = <T>(xs: T[], by: (x: T) => number): T => [...xs].sort((a, b) => by(a) - by(b))[Math.floor(xs.length / 2)]!
const round2 = (x: number): number => Math.round(x * 100) / 100

/** A field of /proc/<pid>/status in kB (VmRSS now, VmHWM the peak), or undefined when it cannot be read. */
function memoryKb(pid: number | undefined, field: 'VmRSS' | 'VmHWM'): number | undefined {
  if (pid === undefined) return undefined
  try {
    const kb = Number(new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1])
    return Number.isFinite(kb) ? kb : undefined
  } catch {
    return undefined
  }
}
const mb = (kb: number | undefined): number | undefined => (kb === undefined ? undefined : Math.round((kb / 1024) * 10) / 10)

/** Resolves with the exit code of a process. */
const exited = (child: ChildProcess): Promise<number | null> =>
  child.exitCode !== null ? Promise.resolve(child.exitCode) : new Promise((r) => child.once('exit', (code) => r(code)))

/** A broker of ours (a script of procs/ that prints {url}) in a measured process. */
async function startOurs(script: string, args: string[]): Promise<Running> {
  const proc = start(script, args, { measured: true })
  try {
    const { url } = JSON.parse(await firstLine(proc, `${script} ${args[0] ?? ''}`, 60_000)) as { url: string }
    return { url, pid: proc.pid, ours: true, stop: () => stop(proc) }
  } catch (err) {
    await stop(proc)
    throw err
  }
}

/** Mosquitto's pid on this machine, read from its pid file or found by name (only when exactly one runs). */
function mosquittoPid(): number | undefined {
  try {
    const pid = Number(readFileSync('/run/mosquitto/mosquitto.pid', 'utf8').trim())
    if (pid > 0 && readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'mosquitto') return pid
  } catch {
    // no pid file: look by name
  }
  const found = readdirSync('/proc').filter((d) => /^\d+$/.test(d)).filter((d) => {
    try {
      return readFileSync(`/proc/${d}/comm`, 'utf8').trim() === 'mosquitto'
    } catch {
      return false
    }
  })
  return found.length === 1 ? Number(found[0]) : undefined
}

/** The running Mosquitto as a system, or why it is left out. */
async function mosquitto(): Promise<System | string> {
  try {
    const c = await mqtt.connectAsync(MOSQUITTO_URL, { clientId: `bench-probe-${process.pid}`, reconnectPeriod: 0, connectTimeout: 3_000 })
    await c.endAsync()
  } catch (err) {
    return `no Mosquitto at ${MOSQUITTO_URL} (${(err as Error).message}); its rows are left out`
  }
  const local = /^mqtt:\/\/(127\.0\.0\.1|localhost)[:/]/.test(MOSQUITTO_URL)
  const pid = local ? mosquittoPid() : undefined
  const version = /version (\S+)/.exec(spawnSync('mosquitto', ['-h'], { encoding: 'utf8' }).stdout ?? '')?.[1] ?? 'unknown'
  return {
    name: MOSQUITTO,
    start: async () => ({ url: MOSQUITTO_URL, pid, ours: false, stop: async () => {} }),
    extra: {
      version,
      note: `system service as installed (${pid === undefined ? 'CPU and RSS not readable' : 'not under --cpu-quota'}); persistent sessions written to disk at autosave only`,
    },
  }
}

/** Adds the devices the section needs to the device table of a new data dir, or says why it cannot. */
async function seed(dataDir: string, devices: number, publishers: number): Promise<string | undefined> {
  const ids = [SUBSCRIBER_ID, ...Array.from({ length: publishers }, (_, i) => publisherId(i)), ...Array.from({ length: devices }, (_, i) => stormId(i))]
  process.stderr.write(`bench: gateway: adding ${ids.length} devices to the device table (one scrypt hash each, not measured)\n`)
  const proc = start('gateway-broker.ts', ['seed', dataDir, JSON.stringify(ids)])
  const code = await exited(proc)
  return code === 0 ? undefined : `the device table could not be seeded (exit code ${code}, reason above)`
}

/** The gateway in `mode`, its broker state fresh at every start. */
function gatewaySystem(mode: GatewayMode, secretsFile: string | undefined): System {
  const name = `outpost-gateway-${mode.auth ? 'auth' : 'open'}-${mode.persistence}`
  return {
    name,
    secretsFile,
    start: () => {
      // The devices stay (gateway.db); sessions, queues and retained messages of an earlier round go.
      if (mode.dataDir !== undefined) for (const f of ['broker.db', 'broker.db-wal', 'broker.db-shm']) rmSync(path.join(mode.dataDir, f), { force: true })
      return startOurs('gateway-broker.ts', ['gateway', JSON.stringify(mode)])
    },
    extra: { auth: mode.auth ? 'on (device table, scrypt; ACL; src check)' : 'off', persistence: mode.persistence },
    loadNote: 'the gateway also delivers every event to its own monitor',
  }
}

function aedesSystem(): System {
  let version = 'unknown'
  try {
    version = (JSON.parse(readFileSync(path.join(ROOT, 'node_modules/aedes/package.json'), 'utf8')) as { version: string }).version
  } catch {
    // left as unknown
  }
  return { name: AEDES, start: () => startOurs('gateway-broker.ts', ['aedes']), extra: { version, persistence: 'memory (aedes-persistence)', auth: 'none' } }
}

/** Outpost's broker alone: the gateway's listener, emitter and limits, without its monitor, auth or registry. */
function brokerSystem(): System {
  return { name: 'outpost-broker-memory', start: () => startOurs('broker.ts', []), extra: { persistence: 'memory (aedes-persistence)', auth: 'none', note: 'startMqttBroker alone: no monitor' } }
}

interface LoadFigures {
  ops_per_s: number
  p50_us: number
  p99_us: number
  messages: number
  lost: number
  publish_errors: number
  cpu_us_per_op_broker: number | null
  cpu_us_per_op_clients: number
}

interface StormFigures {
  all_connected_ms: number
  connected: number
  failed: number
  errors?: string
  p50_us: number
  p99_us: number
  cpu_us_per_op: number | null
  rss_idle_kb?: number
  rss_connected_kb?: number
  rss_peak_kb?: number
  clients_created_ms: number
}

async function throughputOnce(system: System, o: GatewayBenchOptions): Promise<LoadFigures> {
  const broker = await system.start()
  try {
    const args = { url: broker.url, brokerPid: broker.pid, secretsFile: system.secretsFile, publishers: o.publishers, window: o.window, warmupMs: o.warmupMs, durationMs: o.durationMs }
    const load = start('gateway-load.ts', [JSON.stringify(args)])
    try {
      return JSON.parse(await firstLine(load, `${system.name} load`, o.warmupMs + o.durationMs + 120_000)) as LoadFigures
    } finally {
      await stop(load)
    }
  } finally {
    await broker.stop()
  }
}

async function stormOnce(system: System, o: GatewayBenchOptions): Promise<StormFigures> {
  const broker = await system.start()
  try {
    await sleep(o.idleMs)
    const idle = memoryKb(broker.pid, 'VmRSS')
    const cpu0 = cpuUs(broker.pid)
    const storm = start('gateway-storm.ts', [broker.url, String(o.devices), system.secretsFile ?? ''])
    try {
      const r = JSON.parse(await firstLine(storm, `${system.name} storm`, 900_000)) as StormFigures
      const cpu = cpuUs(broker.pid) - cpu0
      await sleep(o.idleMs)
      return {
        ...r,
        cpu_us_per_op: broker.pid === undefined ? null : Math.round((cpu / Math.max(1, r.connected)) * 10) / 10,
        rss_idle_kb: idle,
        rss_connected_kb: memoryKb(broker.pid, 'VmRSS'),
        // The peak since the process started: only a broker started for this round has one that means the storm.
        rss_peak_kb: broker.ours ? memoryKb(broker.pid, 'VmHWM') : undefined,
      }
    } finally {
      await stop(storm)
    }
  } finally {
    await broker.stop()
  }
}

/** Outpost's rate over a baseline's, round by round, and the median of those ratios. */
function paired(mine: { ops_per_s: number }[], theirs: { ops_per_s: number }[] | undefined, name: string): Record<string, number | string> {
  if (theirs === undefined) return {}
  const ratios = mine.map((r, i) => r.ops_per_s / Math.max(1, theirs[i]!.ops_per_s))
  return { [`per_round_vs_${name}`]: ratios.map((x) => x.toFixed(2)).join(' '), [`median_paired_vs_${name}`]: round2(median(ratios, (x) => x)) }
}

/** Leaves out keys whose value is undefined (a figure that could not be read). */
const defined = (o: Record<string, number | string | undefined>): Record<string, number | string> =>
  Object.fromEntries(Object.entries(o).filter((e): e is [string, number | string] => e[1] !== undefined))

export async function benchGateway(o: GatewayBenchOptions): Promise<BenchResult[]> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'outpost-bench-gateway-'))
  try {
    // Authentication needs the device table; where it cannot be filled, the gateway runs open
    // and its rows say so (`open` in their name).
    const refused = await seed(dataDir, o.devices, o.publishers)
    if (refused !== undefined) process.stderr.write(`bench: gateway: authentication off in this run: ${refused}\n`)
    const auth = refused === undefined
    const full = gatewaySystem({ auth, persistence: 'sqlite', dataDir }, auth ? path.join(dataDir, SECRETS_FILE) : undefined)
    const open = gatewaySystem({ auth: false, persistence: 'memory' }, undefined)
    const mq = await mosquitto()
    if (typeof mq === 'string') process.stderr.write(`bench: gateway: ${mq}\n`)
    // Each gateway run sits between the baselines it is compared with.
    const systems = [aedesSystem(), full, ...(typeof mq === 'string' ? [] : [mq]), open]
    const loadSystems = [...systems, brokerSystem()]
    const outposts = loadSystems.filter((s) => s.name.startsWith('outpost')).map((s) => s.name)

    const loads = new Map<string, LoadFigures[]>()
    const storms = new Map<string, StormFigures[]>()
    for (let round = 0; round < o.rounds; round++) {
      for (const s of loadSystems) loads.set(s.name, [...(loads.get(s.name) ?? []), await throughputOnce(s, o)])
    }
    for (let round = 0; round < o.rounds; round++) {
      for (const s of systems) storms.set(s.name, [...(storms.get(s.name) ?? []), await stormOnce(s, o)])
    }

    const out: BenchResult[] = []
    for (const s of loadSystems) {
      const rs = loads.get(s.name)!
      const m = median(rs, (r) => r.ops_per_s)
      const ratios = outposts.includes(s.name) ? { ...paired(rs, loads.get(AEDES), 'aedes'), ...paired(rs, loads.get(MOSQUITTO), 'mosquitto') } : {}
      out.push({
        system: s.name,
        workload: THROUGHPUT,
        concurrency: o.window,
        ops_per_s: m.ops_per_s,
        p50_us: m.p50_us,
        p99_us: m.p99_us,
        cpu_us_per_op: m.cpu_us_per_op_broker,
        extra: {
          ...ratios,
          ...(s.name === full.name ? { goal_vs_aedes: 0.7 } : {}),
          publishers: o.publishers,
          subscriber: 'persistent session, QoS 1',
          rounds: o.rounds,
          min_ops_per_s: Math.min(...rs.map((r) => r.ops_per_s)),
          max_ops_per_s: Math.max(...rs.map((r) => r.ops_per_s)),
          // Every round's messages either arrive or are counted here: a broker that drops QoS 1 shows it.
          lost: rs.reduce((n, r) => n + r.lost, 0),
          publish_errors: rs.reduce((n, r) => n + r.publish_errors, 0),
          cpu_us_per_op_clients: m.cpu_us_per_op_clients,
          ...s.extra,
          ...(s.loadNote === undefined ? {} : { note: s.loadNote }),
        },
      })
    }
    for (const s of systems) {
      const rs = storms.get(s.name)!
      const m = median(rs, (r) => r.all_connected_ms)
      out.push({
        system: s.name,
        workload: STORM,
        concurrency: o.devices,
        // Logins per second over the whole storm: devices / time until the last is connected.
        ops_per_s: m.all_connected_ms > 0 ? Math.round((m.connected / m.all_connected_ms) * 1000) : 0,
        p50_us: m.p50_us,
        p99_us: m.p99_us,
        cpu_us_per_op: m.cpu_us_per_op,
        extra: defined({
          all_connected_ms: m.all_connected_ms,
          failed: m.failed,
          errors: m.errors,
          rss_idle_mb: mb(m.rss_idle_kb),
          rss_connected_mb: mb(m.rss_connected_kb),
          rss_peak_mb: mb(m.rss_peak_kb),
          kb_per_device: m.rss_idle_kb === undefined || m.rss_connected_kb === undefined ? undefined : Math.round((m.rss_connected_kb - m.rss_idle_kb) / Math.max(1, m.connected)),
          clients_created_ms: m.clients_created_ms,
          rounds: o.rounds,
          min_all_connected_ms: Math.min(...rs.map((r) => r.all_connected_ms)),
          max_all_connected_ms: Math.max(...rs.map((r) => r.all_connected_ms)),
          ...s.extra,
        }),
      })
    }
    return out
  } finally {
    rmSync(dataDir, { recursive: true, force: true })
  }
}
