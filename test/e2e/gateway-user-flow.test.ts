// The README's gateway flow, driven from outside as a user runs it: a config file, two devices
// added with the CLI, the gateway and the two demo devices as processes with the credentials the
// CLI printed, mosquitto_sub logged in as a third device, `devices list --json`, /devices and
// /metrics with the token, then kill -9 of the gateway and a restart on the same file: retained
// presence and the QoS 1 messages queued for a stopped device are still there.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { afterAll, describe, expect, it } from 'vitest'
import YAML from 'yaml'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { freePort, until } from '../helpers/wait.js'

const run = promisify(execFile)
const dir = mkdtempSync(path.join(tmpdir(), 'outpost-gateway-user-flow-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const TOKEN = 'user-flow-token-0123456789'
// Variables a developer may have set that would change where these processes go are left out
// (not set empty: a device takes an empty OUTPOST_MQTT_USERNAME as a user name).
const UNSET = ['OUTPOST_MQTT_PORT', 'OUTPOST_MQTT_HOST', 'OUTPOST_GATEWAY_DATA_DIR', 'OUTPOST_HTTP_PORT', 'OUTPOST_HTTP_HOST', 'OUTPOST_AUTH', 'OUTPOST_GATEWAY_CONFIG', 'OUTPOST_LOG_LEVEL', 'OUTPOST_MQTT_USERNAME', 'OUTPOST_MQTT_PASSWORD', 'OUTPOST_MQTT_URL', 'OUTPOST_DEVICE_ID']
const BASE_ENV: Record<string, string | undefined> = Object.fromEntries(Object.entries(process.env).filter(([k]) => !UNSET.includes(k)))
const ENV: Record<string, string> = {
  OUTPOST_HTTP_TOKEN: TOKEN,
  OUTPOST_LOG_FORMAT: 'json',
  OUTPOST_DATA_DIR: path.join(dir, 'devices'),
  OUTPOST_SAMPLE_MS: '500',
}

/** Runs the CLI to its end and returns stdout (a failure fails the test with its stderr). */
async function outpost(args: string[]): Promise<string> {
  const r = await run(process.execPath, ['bin/outpost.js', ...args], { env: { ...BASE_ENV, ...ENV }, timeout: 20_000 })
  return r.stdout
}

/** A credentials line as `devices add` prints it: the variables a device runs with. */
function deviceLine(out: string): Record<string, string> {
  const line = out.split('\n').find((l) => l.includes('OUTPOST_MQTT_URL='))
  if (line === undefined) expect.fail(`no device line in:\n${out}`)
  return Object.fromEntries([...line.matchAll(/(OUTPOST_\w+)=(\S+)/g)].map((m) => [m[1]!, m[2]!]))
}

interface Proc {
  proc: ChildProcess
  out: () => string
  exited: Promise<void>
}

describe('the README gateway flow, as a user runs it', () => {
  const cleanup = cleanupAfterEach()

  /** Starts a process whose output is collected; it is killed after the test. */
  function start(cmd: string, args: string[], env: Record<string, string> = {}): Proc {
    const proc = spawn(cmd, args, { env: { ...BASE_ENV, ...ENV, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    proc.stdout!.on('data', (c: Buffer) => (out += c.toString()))
    proc.stderr!.on('data', (c: Buffer) => (out += c.toString()))
    const exited = new Promise<void>((r) => proc.once('exit', () => r()))
    cleanup(async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
      await exited
    })
    return { proc, out: () => out, exited }
  }

  /** The gateway from the config file, once it said it is ready: its HTTP base URL. */
  async function startGateway(config: string): Promise<{ gw: Proc; http: string }> {
    const gw = start(process.execPath, ['bin/outpost.js', 'gateway', '--config', config])
    const ready = (): { http: string } | undefined =>
      gw
        .out()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as { msg: string; http: string })
        .find((l) => l.msg === 'gateway ready')
    await until(() => ready() !== undefined || gw.proc.exitCode !== null, 30_000).catch(() => expect.fail(`no ready line:\n${gw.out()}`))
    if (ready() === undefined) expect.fail(`the gateway stopped:\n${gw.out()}`)
    return { gw, http: ready()!.http }
  }

  /** mosquitto_sub on every device's presence, one `<retained> <topic>` line a message. */
  function watch(port: number, secret: string): Proc {
    return start('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(port), '-i', 'watcher', '-u', 'watcher', '-P', secret, '-t', 'ob/+/status', '-q', '1', '-F', '%r %t'])
  }

  async function get(url: string, token?: string): Promise<Response> {
    return fetch(url, { headers: token === undefined ? {} : { authorization: `Bearer ${token}` } })
  }

  async function registry(http: string): Promise<Map<string, boolean>> {
    const body = (await (await get(`${http}/devices`, TOKEN)).json()) as { devices: { device: string; online: boolean }[] }
    return new Map(body.devices.map((d) => [d.device, d.online]))
  }

  it('config, devices add, gateway, demo devices, mosquitto_sub, list, /devices, /metrics, kill -9 and restart, then a clean stop', async () => {
    // The README's example file, with its ports moved: the MQTT port fixed (a free one) so that
    // after the restart the devices find the gateway where their credentials line points, HTTP on
    // any free port.
    const port = await freePort()
    const example = YAML.parse(readFileSync('examples/gateway/gateway.yaml', 'utf8')) as { dataDir: string; mqtt: { port: number }; http: { port: number } }
    expect(example.dataDir).toBe('data')
    example.mqtt.port = port
    example.http.port = 0
    const config = path.join(dir, 'gateway.yaml')
    writeFileSync(config, YAML.stringify(example))

    const thermo = deviceLine(await outpost(['devices', 'add', 'thermo-1', '--config', config]))
    const display = deviceLine(await outpost(['devices', 'add', 'display-1', '--config', config]))
    const watcherUrl = new URL(deviceLine(await outpost(['devices', 'add', 'watcher', '--config', config])).OUTPOST_MQTT_URL!)
    expect(thermo.OUTPOST_MQTT_URL).toContain(`@127.0.0.1:${port}`)
    expect(thermo.OUTPOST_DEVICE_ID).toBe('thermo-1')

    let { gw, http } = await startGateway(config)
    expect(gw.out()).not.toContain('authentication is off')

    start(process.execPath, ['bin/outpost.js', 'device', 'thermo'], thermo)
    let displayProc = start(process.execPath, ['bin/outpost.js', 'device', 'display'], display)
    await until(() => /heard a reading event/.test(displayProc.out()), 30_000).catch(() => expect.fail(`no reading reached the display:\n${displayProc.out()}`))

    // A third device's credentials read every device's presence (retained).
    const sub = watch(port, decodeURIComponent(watcherUrl.password))
    await until(() => /ob\/thermo-1\/status/.test(sub.out()) && /ob\/display-1\/status/.test(sub.out()), 20_000).catch(() => expect.fail(`mosquitto_sub saw:\n${sub.out()}`))
    sub.proc.kill('SIGTERM')

    const listed = JSON.parse(await outpost(['devices', 'list', '--json', '--config', config])) as { id: string; online?: boolean; status: string }[]
    expect(listed.filter((d) => d.online === true).map((d) => d.id).sort()).toEqual(['display-1', 'thermo-1'])
    expect(listed.find((d) => d.id === 'watcher')?.status).toBe('active')

    expect((await get(`${http}/devices`)).status).toBe(401)
    expect((await get(`${http}/metrics`)).status).toBe(401)
    const online = await registry(http)
    expect(online.get('thermo-1')).toBe(true)
    expect(online.get('display-1')).toBe(true)
    const metrics = await (await get(`${http}/metrics`, TOKEN)).text()
    expect(metrics).toMatch(/^outpost_gateway_devices_online 2$/m)
    expect(metrics).toMatch(/^outpost_gateway_messages_total\{direction="in",kind="evt"\} [1-9]/m)

    // The display goes away; the thermo's readings for it wait in its persistent session.
    displayProc.proc.kill('SIGTERM')
    await displayProc.exited
    await eventually(async () => (await registry(http)).get('display-1') === false, 'display-1 offline')
    const eventsIn = async (): Promise<number> => Number(/^outpost_gateway_messages_total\{direction="in",kind="evt"\} (\d+)$/m.exec(await (await get(`${http}/metrics`, TOKEN)).text())?.[1])
    const sinceDisplayLeft = await eventsIn()
    await eventually(async () => (await eventsIn()) >= sinceDisplayLeft + 4, 'readings while display-1 is away')

    const killedAt = Date.now()
    gw.proc.kill('SIGKILL')
    await gw.exited
    ;({ gw, http } = await startGateway(config))

    // Retained presence came back from broker.db: display-1 is not running to announce itself.
    const again = watch(port, decodeURIComponent(watcherUrl.password))
    await until(() => /^1 ob\/display-1\/status$/m.test(again.out()) && /^1 ob\/thermo-1\/status$/m.test(again.out()), 20_000).catch(() => expect.fail(`mosquitto_sub saw after the restart:\n${again.out()}`))

    // The thermo reconnected by itself; the display, started again, gets readings that were
    // queued for it before the kill (sent = logged time - deliveredLateMs, one machine's clock).
    expect((await registry(http)).get('display-1')).toBe(false)
    await eventually(async () => (await registry(http)).get('thermo-1') === true, 'thermo-1 online after the restart')
    displayProc = start(process.execPath, ['bin/outpost.js', 'device', 'display'], display)
    const queuedBeforeKill = (): number =>
      displayProc
        .out()
        .split('\n')
        .filter((l) => l.startsWith('{') && l.includes('"deliveredLateMs"'))
        .map((l) => JSON.parse(l) as { time: number; deliveredLateMs: number })
        .filter((l) => l.time - l.deliveredLateMs < killedAt).length
    await until(() => queuedBeforeKill() > 0, 30_000).catch(() => expect.fail(`nothing queued before the kill reached the display:\n${displayProc.out()}`))
    await eventually(async () => (await registry(http)).get('display-1') === true, 'display-1 online after the restart')
    const relisted = JSON.parse(await outpost(['devices', 'list', '--json', '--config', config])) as { id: string; online?: boolean }[]
    expect(relisted.filter((d) => d.online === true).map((d) => d.id).sort()).toEqual(['display-1', 'thermo-1'])
    expect(await (await get(`${http}/metrics`, TOKEN)).text()).toMatch(/^outpost_gateway_devices_online 2$/m)

    // Ctrl-C (SIGTERM) stops the gateway cleanly: exit code 0, and no warning about its own
    // client (its socket ended before the broker had read its DISCONNECT: "client error").
    const before = gw.out().length
    gw.proc.kill('SIGTERM')
    await gw.exited
    expect(gw.proc.exitCode).toBe(0)
    const stopLines = gw.out().slice(before).split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { level: number; msg: string; client?: string })
    expect(stopLines.filter((l) => l.level >= 40), gw.out().slice(before)).toEqual([])
    expect(stopLines.map((l) => l.msg)).toContain('runtime stopped')
    // With the gateway stopped, no device is online, and the list says so (it said online).
    const afterStop = JSON.parse(await outpost(['devices', 'list', '--json', '--config', config])) as { id: string; online?: boolean }[]
    expect(afterStop.filter((d) => d.online === true).map((d) => d.id)).toEqual([])
  }, 60_000)
})

/** Polls an asynchronous condition until it holds (20 s at most), failing with what it waited for. */
async function eventually(check: () => Promise<boolean>, what: string): Promise<void> {
  const end = Date.now() + 20_000
  while (!(await check().catch(() => false))) {
    if (Date.now() > end) expect.fail(`waited in vain for ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}
