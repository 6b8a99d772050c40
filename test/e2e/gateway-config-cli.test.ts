// The real CLI (node bin/outpost.js) with a gateway config file: a typo stops it with one line
// naming the key, --print-config shows what it would run on with the token redacted, and a
// gateway started from a file listens where the file says and keeps anonymous clients out.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import mqtt from 'mqtt'
import { afterAll, describe, expect, it } from 'vitest'
import YAML from 'yaml'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { until } from '../helpers/wait.js'

const run = promisify(execFile)

/** Runs the CLI to its end (20 s at most: these runs should end at once). */
async function outpost(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; out: string; err: string }> {
  try {
    const r = await run(process.execPath, ['bin/outpost.js', ...args], { env: { ...process.env, ...env }, timeout: 20_000 })
    return { code: 0, out: r.stdout, err: r.stderr }
  } catch (e) {
    const x = e as { code: number | null; stdout: string; stderr: string }
    return { code: x.code, out: x.stdout, err: x.stderr }
  }
}

const dir = mkdtempSync(path.join(tmpdir(), 'outpost-gateway-config-'))
let n = 0
/** Writes a config file into the test's folder and returns its path. */
function configFile(text: string, ext = '.yaml'): string {
  const f = path.join(dir, `gateway-${++n}${ext}`)
  writeFileSync(f, text)
  return f
}

// Variables a developer may have set that would change what these runs print.
const CLEAN_ENV: Record<string, string> = Object.fromEntries(
  ['OUTPOST_MQTT_PORT', 'OUTPOST_MQTT_HOST', 'OUTPOST_GATEWAY_DATA_DIR', 'OUTPOST_HTTP_PORT', 'OUTPOST_HTTP_HOST', 'OUTPOST_HTTP_TOKEN', 'OUTPOST_AUTH', 'OUTPOST_GATEWAY_CONFIG', 'OUTPOST_LOG_LEVEL'].map((k) => [k, '']),
)

afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('outpost gateway --config', () => {
  const cleanup = cleanupAfterEach()

  it('stops at a typo with one line naming the key and the keys accepted, exit code 2', async () => {
    const r = await outpost(['gateway', '--config', configFile('mqqt:\n  port: 1883\n')], CLEAN_ENV)
    expect(r.code).toBe(2)
    const lines = r.err.trim().split('\n')
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(/^outpost: INVALID_CONFIG: gateway-\d+\.yaml: mqqt: unknown key; expected one of dataDir, mqtt, auth, persistence, http, log, forward, commands$/)
  })

  it('names a wrong value, a missing file and a YAML syntax error the same way (one line, exit 2)', async () => {
    const cases: [string, RegExp][] = [
      [configFile('mqtt:\n  port: abc\n'), /^outpost: INVALID_CONFIG: gateway-\d+\.yaml: mqtt\.port: expected a whole number from 0 to 65535 \(0: a free port\), got "abc"$/],
      [path.join(dir, 'missing.yaml'), /^outpost: INVALID_CONFIG: \/\S*\/missing\.yaml: cannot read the config file \(no such file\)$/],
      [configFile('mqtt:\n  port: [1883\nauth: {}\n'), /^outpost: INVALID_CONFIG: gateway-\d+\.yaml: not valid YAML at line \d+, column \d+: /],
      [configFile('{ "mqtt": { "port": 1883, } ', '.json'), /^outpost: INVALID_CONFIG: gateway-\d+\.json: not valid JSON/],
      // A NATS subject with a wildcard: before, it passed, and every event became a dead letter.
      [configFile("forward:\n  targets:\n    js: { type: nats, servers: nats://127.0.0.1:4222, stream: { name: S }, subject: 'ev.*.{device}.{service}.{version}.{event}' }\n"), /^outpost: INVALID_CONFIG: gateway-\d+\.yaml: forward\.targets\.js\.subject: expected a subject events can be published to \(this one has a wildcard\), e\.g\. outpost\.evt\.\{device\}\.\{service\}\.\{version\}\.\{event\}, got "ev\.\*\./],
    ]
    for (const [file, wanted] of cases) {
      const r = await outpost(['gateway', '--config', file], CLEAN_ENV)
      expect(r.code, file).toBe(2)
      expect(r.err.trim().split('\n'), file).toHaveLength(1)
      expect(r.err.trim(), file).toMatch(wanted)
    }
  }, 60_000)

  it('takes the file from OUTPOST_GATEWAY_CONFIG', async () => {
    const r = await outpost(['gateway'], { ...CLEAN_ENV, OUTPOST_GATEWAY_CONFIG: configFile('persistence: disk\n') })
    expect(r.code).toBe(2)
    expect(r.err).toContain('persistence: expected sqlite or memory, got "disk"')
  })

  it('--print-config prints the effective configuration with the token redacted, and exits 0', async () => {
    const token = 'a-long-secret-token-1234567890'
    const file = configFile(`mqtt: { port: 1884 }\nhttp: { port: 9091, token: ${token} }\ndataDir: data\n`)
    const r = await outpost(['gateway', '--config', file, '--print-config', '--host', '0.0.0.0'], { ...CLEAN_ENV, OUTPOST_HTTP_PORT: '9092' })
    expect(r.code).toBe(0)
    expect(r.out).not.toContain(token)
    expect(r.err).not.toContain(token)
    const printed = YAML.parse(r.out) as { dataDir: string; mqtt: { host: string; port: number }; http: { port: number; token: string }; auth: { enabled: boolean }; persistence: string }
    expect(printed.http).toMatchObject({ port: 9092, token: '<redacted>' })
    expect(printed.mqtt).toMatchObject({ host: '0.0.0.0', port: 1884 })
    expect(printed.dataDir).toBe(path.join(dir, 'data'))
    expect(printed.auth.enabled).toBe(true)
    expect(printed.persistence).toBe('sqlite')
    // Nothing ran: no data folder was made.
    expect(existsSync(path.join(dir, 'data'))).toBe(false)

    const fromEnv = await outpost(['gateway', '--print-config'], { ...CLEAN_ENV, OUTPOST_HTTP_TOKEN: token })
    expect(fromEnv.code).toBe(0)
    expect(fromEnv.out).toContain('token: <redacted>')
    expect(fromEnv.out).not.toContain(token)
  }, 60_000)

  it('a bad variable is named in one line, exit 2', async () => {
    const r = await outpost(['gateway', '--print-config'], { ...CLEAN_ENV, OUTPOST_AUTH: 'maybe' })
    expect(r.code).toBe(2)
    expect(r.err.trim()).toBe('outpost: BAD_ARGUMENT: OUTPOST_AUTH "maybe" is not accepted; expected on or off')
  })

  /** Starts `outpost gateway --config file` and waits for its ready line; it is stopped after the test. */
  async function startFromFile(text: string): Promise<{ proc: ChildProcess; url: string; out: () => string }> {
    const proc = spawn(process.execPath, ['bin/outpost.js', 'gateway', '--config', configFile(text)], { env: { ...process.env, ...CLEAN_ENV }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    proc.stdout!.on('data', (c: Buffer) => (out += c.toString()))
    proc.stderr!.on('data', (c: Buffer) => (out += c.toString()))
    const exited = new Promise<void>((r) => proc.once('exit', () => r()))
    cleanup(async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM')
      await exited
    })
    const ready = (): { url: string } | undefined =>
      out
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as { msg: string; url: string })
        .find((l) => l.msg === 'gateway ready')
    await until(() => ready() !== undefined || proc.exitCode !== null, 30_000).catch(() => expect.fail(`no ready line:\n${out}`))
    if (ready() === undefined) expect.fail(`the gateway stopped:\n${out}`)
    return { proc, url: ready()!.url, out: () => out }
  }

  it('a gateway started from a file (port 0 in it) listens there and refuses an anonymous client', async () => {
    const gw = await startFromFile(`mqtt: { port: 0 }\nhttp: { port: 0 }\ndataDir: ${JSON.stringify(path.join(dir, 'gw-auth'))}\n`)
    expect(gw.url).toMatch(/^mqtt:\/\/127\.0\.0\.1:\d+$/)
    expect(gw.url).not.toBe('mqtt://127.0.0.1:0')
    // The file's defaults: authentication on, broker state and devices kept in its data folder.
    expect(gw.out()).not.toContain('authentication is off')
    // Device logins on, the HTTP face without a token (none in the file, none in the environment): said.
    expect(gw.out()).toContain('the HTTP API has no token (OUTPOST_HTTP_TOKEN or http.token): anyone who reaches it may call device commands and flash devices')
    await until(() => existsSync(path.join(dir, 'gw-auth', 'gateway.db')), 10_000)

    const client = mqtt.connect(gw.url, { reconnectPeriod: 0, connectTimeout: 10_000 })
    cleanup(() => void client.end(true))
    const outcome = await new Promise<string>((resolve) => {
      client.once('connect', () => resolve('connected'))
      client.once('error', (err) => resolve(`refused: ${(err as Error & { code?: number }).code ?? err.message}`))
    })
    // MQTT 3.1.1 CONNACK 4 (bad user name or password) or 5 (not authorized).
    expect(outcome).toMatch(/^refused: [45]$/)
  }, 60_000)

  it('a gateway from a file with auth off takes an anonymous client that publishes and subscribes', async () => {
    const gw = await startFromFile(`mqtt: { port: 0 }\nhttp: { enabled: false }\nauth: { enabled: false }\npersistence: memory\ndataDir: ${JSON.stringify(path.join(dir, 'gw-open'))}\n`)
    // Said as the file's choice, not as the defaults of a start without one.
    expect(gw.out()).toMatch(/authentication is off: any client may connect, publish and subscribe \(auth\.enabled is false in \/[^)]+\)/)
    expect(gw.out()).not.toContain('start with --config to turn it on')
    const client = mqtt.connect(gw.url, { reconnectPeriod: 0, connectTimeout: 10_000 })
    cleanup(() => void client.end(true))
    const got: string[] = []
    client.on('message', (_t, p) => got.push(p.toString()))
    await client.subscribeAsync('x/test', { qos: 1 })
    await client.publishAsync('x/test', 'hello', { qos: 1 })
    await until(() => got.length > 0, 10_000)
    expect(got).toEqual(['hello'])
  }, 60_000)
})

describe('outpost devices', () => {
  it('a wrong call prints the devices help on stdout and one line on stderr, exit 2', async () => {
    const data = mkdtempSync(path.join(tmpdir(), 'outpost-devices-cli-'))
    try {
      const r = await outpost(['devices', 'frobnicate'], { ...CLEAN_ENV, OUTPOST_GATEWAY_DATA_DIR: data })
      expect(r.code).toBe(2)
      expect(r.out).toContain('outpost devices')
      expect(r.err.trim().split('\n')).toHaveLength(1)
      expect(r.err).toMatch(/^outpost: BAD_ARGUMENT: /)
    } finally {
      rmSync(data, { recursive: true, force: true })
    }
  })

  it('refuses a bad config file before it touches anything', async () => {
    const r = await outpost(['devices', 'list', '--config', configFile('auth: { rolse: {} }\n')], CLEAN_ENV)
    expect(r.code).toBe(2)
    expect(r.err.trim()).toMatch(/^outpost: INVALID_CONFIG: gateway-\d+\.yaml: auth\.rolse: unknown key; expected one of enabled, roles$/)
  })
})
