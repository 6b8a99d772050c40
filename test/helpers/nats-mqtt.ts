import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import mqtt from 'mqtt'
import { freePort } from './wait.js'

/** Where Debian's nats-server package puts the binary (override with OUTPOST_NATS_SERVER). */
export const NATS_SERVER_BIN = process.env.OUTPOST_NATS_SERVER ?? '/usr/sbin/nats-server'

/** A NATS user as the `authorization { users: [...] }` block of nats-server takes it. */
export interface NatsUser {
  user: string
  password: string
  /** NATS subjects (`.`-separated, `*` and `>` wildcards) the user may publish to and subscribe to. */
  permissions?: { publish?: { allow?: string[]; deny?: string[] }; subscribe?: { allow?: string[]; deny?: string[] } }
  /** e.g. `['MQTT']`: the user may log in over MQTT only, not with a NATS client. */
  allowed_connection_types?: string[]
}

export interface NatsMqttOptions {
  /** With users the server takes only those (MQTT username/password map to them). */
  users?: NatsUser[]
  /** Lines added verbatim inside the `mqtt { }` block (e.g. `max_ack_pending: 10`). */
  mqtt?: string[]
  /** Lines added verbatim at the top level of the config (e.g. `max_payload: 4096`). */
  extra?: string[]
}

/** A nats-server child process with JetStream and its MQTT listener, on free ports of 127.0.0.1. */
export interface NatsMqtt {
  /** `mqtt://127.0.0.1:<port>` of the MQTT listener. */
  readonly url: string
  /** `nats://127.0.0.1:<port>` of the NATS client listener. */
  readonly natsUrl: string
  /** The temp dir holding the config file and the JetStream store. */
  readonly dir: string
  /** SIGTERM; resolves once the process has exited (SIGKILL after 10 s). */
  stop(): Promise<void>
  /** SIGKILL, as a crash would; resolves once the process has exited. */
  kill(): Promise<void>
  /** Starts the server again on the same ports and store dir: persistent sessions and retained messages survive. */
  restart(): Promise<void>
  /** Kills the server (if running) and removes its temp dir. Idempotent. */
  dispose(): Promise<void>
}

// Every server this process started, so a test run that dies without its afterEach does not leave
// nats-server running behind it: a child process is not killed with its parent.
const running = new Set<ChildProcess>()
const dirs = new Set<string>()
let hooked = false
function killOnExit(): void {
  if (hooked) return
  hooked = true
  process.on('exit', () => {
    for (const p of running) p.kill('SIGKILL')
    for (const d of dirs) rmSync(d, { recursive: true, force: true })
  })
}

const quote = (s: string): string => JSON.stringify(s)

function usersBlock(users: NatsUser[]): string[] {
  const lines = ['authorization {', '  users: [']
  // The config format takes JSON objects as they are.
  for (const u of users) lines.push(`    ${JSON.stringify(u)}`)
  lines.push('  ]', '}')
  return lines
}

/** Resolves once an MQTT CONNECT to `url` is accepted (JetStream must be ready for that), or throws after `ms`. */
async function mqttReady(url: string, user: NatsUser | undefined, proc: ChildProcess, ms: number): Promise<void> {
  const end = Date.now() + ms
  let last: unknown
  while (Date.now() < end) {
    if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`nats-server exited (${proc.exitCode ?? proc.signalCode}) before its MQTT listener was up`)
    try {
      const c = await mqtt.connectAsync(url, { clientId: `ready-probe-${process.pid}`, clean: true, reconnectPeriod: 0, connectTimeout: 2_000, username: user?.user, password: user?.password })
      await c.endAsync()
      return
    } catch (err) {
      last = err
      await new Promise((r) => setTimeout(r, 50))
    }
  }
  throw new Error(`nats-server's MQTT listener at ${url} did not accept a CONNECT within ${ms} ms: ${String(last)}`)
}

/**
 * Starts `nats-server` with a generated config in a fresh temp dir. Ports are chosen by binding
 * port 0 and closing it: in 2.9.10 `mqtt { listen: …:0 }` opens no MQTT listener at all, and
 * `-1` picks a random port that only the log tells, which a restart would not get back.
 */
export async function startNatsMqtt(opts: NatsMqttOptions = {}): Promise<NatsMqtt> {
  killOnExit()
  const dir = mkdtempSync(path.join(os.tmpdir(), 'outpost-nats-'))
  dirs.add(dir)
  const natsPort = await freePort()
  const mqttPort = await freePort()
  const config = [
    `server_name: outpost_test_${natsPort}`,
    `listen: 127.0.0.1:${natsPort}`,
    `jetstream { store_dir: ${quote(path.join(dir, 'js'))} }`,
    ...(opts.extra ?? []),
    ...(opts.users === undefined ? [] : usersBlock(opts.users)),
    'mqtt {',
    `  listen: 127.0.0.1:${mqttPort}`,
    ...(opts.mqtt ?? []).map((l) => `  ${l}`),
    '}',
  ]
  const configFile = path.join(dir, 'nats.conf')
  writeFileSync(configFile, config.join('\n') + '\n')
  const url = `mqtt://127.0.0.1:${mqttPort}`
  let proc: ChildProcess | undefined
  let output = ''

  const start = async (): Promise<void> => {
    const p = spawn(NATS_SERVER_BIN, ['-c', configFile], { stdio: ['ignore', 'pipe', 'pipe'] })
    proc = p
    running.add(p)
    p.on('exit', () => running.delete(p))
    // The server logs to stderr; the tail is kept for the error when it does not come up.
    const keep = (b: Buffer): void => void (output = (output + b.toString()).slice(-4_000))
    p.stdout?.on('data', keep)
    p.stderr?.on('data', keep)
    try {
      await mqttReady(url, opts.users?.[0], p, 15_000)
    } catch (err) {
      p.kill('SIGKILL')
      throw new Error(`${(err as Error).message}\n--- nats-server output ---\n${output}`)
    }
  }

  const ended = async (signal: NodeJS.Signals): Promise<void> => {
    const p = proc
    if (p === undefined || p.exitCode !== null || p.signalCode !== null) return
    const exited = new Promise<void>((r) => p.once('exit', () => r()))
    p.kill(signal)
    const force = setTimeout(() => p.kill('SIGKILL'), 10_000)
    await exited
    clearTimeout(force)
  }

  await start()
  let disposed = false
  return {
    url,
    natsUrl: `nats://127.0.0.1:${natsPort}`,
    dir,
    stop: () => ended('SIGTERM'),
    kill: () => ended('SIGKILL'),
    async restart() {
      await ended('SIGTERM')
      await start()
    },
    async dispose() {
      if (disposed) return
      disposed = true
      await ended('SIGKILL')
      rmSync(dir, { recursive: true, force: true })
      dirs.delete(dir)
    },
  }
}
