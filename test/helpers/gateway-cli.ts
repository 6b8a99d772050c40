// A gateway started as a user starts it, `node bin/outpost.js gateway --config <file>`, for the
// outside tests: its output collected line by line, its URLs read from the "gateway ready" line.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { promisify } from 'node:util'
import { until } from './wait.js'

/** Variables a developer may have set that would change the gateway a test starts: emptied (an empty OUTPOST_* is unset). */
export const CLEAN_GATEWAY_ENV: Record<string, string> = Object.fromEntries(
  ['OUTPOST_MQTT_PORT', 'OUTPOST_MQTT_HOST', 'OUTPOST_GATEWAY_DATA_DIR', 'OUTPOST_HTTP_PORT', 'OUTPOST_HTTP_HOST', 'OUTPOST_HTTP_TOKEN', 'OUTPOST_AUTH', 'OUTPOST_GATEWAY_CONFIG', 'OUTPOST_LOG_LEVEL', 'OUTPOST_LOG_FORMAT'].map((k) => [k, '']),
)

const run = promisify(execFile)

/** Runs the CLI as a user does (`node bin/outpost.js …`) to its end, with a clean environment plus `env`. */
export async function outpost(args: string[], env: Record<string, string> = {}, timeoutMs = 20_000): Promise<{ code: number | null; out: string; err: string }> {
  try {
    const r = await run(process.execPath, ['bin/outpost.js', ...args], { env: { ...process.env, ...CLEAN_GATEWAY_ENV, ...env }, timeout: timeoutMs })
    return { code: 0, out: r.stdout, err: r.stderr }
  } catch (e) {
    const x = e as { code: number | null; stdout: string; stderr: string }
    return { code: x.code, out: x.stdout, err: x.stderr }
  }
}

/** A running `outpost gateway` process. */
export interface GatewayCli {
  readonly child: ChildProcess
  /** MQTT and HTTP URLs from its ready line. */
  readonly url: string
  readonly http: string
  exited(): boolean
}

/**
 * Starts `outpost gateway --config <configFile>` (log format json, so the ready line parses) and
 * waits for its ready line; every line it writes (stdout and stderr) is appended to `lines`.
 * @throws when it exits first, with what it wrote
 */
export async function startGatewayCli(configFile: string, lines: string[], timeoutMs = 30_000): Promise<GatewayCli> {
  const child = spawn(process.execPath, ['bin/outpost.js', 'gateway', '--config', configFile], { env: { ...process.env, ...CLEAN_GATEWAY_ENV }, stdio: ['ignore', 'pipe', 'pipe'] })
  let exited = false
  child.on('exit', () => (exited = true))
  const from = lines.length
  for (const stream of [child.stdout!, child.stderr!]) {
    let rest = ''
    stream.setEncoding('utf8')
    stream.on('data', (chunk: string) => {
      const parts = (rest + chunk).split('\n')
      rest = parts.pop()!
      lines.push(...parts)
    })
  }
  let ready: { url: string; http: string } | undefined
  await until(() => {
    if (exited) throw new Error(`gateway exited: ${lines.slice(from).join('\n')}`)
    for (const l of lines.slice(from)) if (l.includes('"gateway ready"')) ready = JSON.parse(l) as { url: string; http: string }
    return ready !== undefined
  }, timeoutMs)
  return { child, url: ready!.url, http: ready!.http, exited: () => exited }
}

/** Resident memory of a process, bytes (from /proc). */
export function rssOf(pid: number | undefined): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? NaN) * 1024
}
