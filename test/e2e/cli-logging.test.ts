// One logging setup for every entry point: readable lines when asked (the default on a terminal),
// JSON lines when piped or asked, OUTPOST_LOG_LEVEL honoured by the gateway too; and a gateway
// under a flood of events and reconnects writes a bounded log.
import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Encoder } from 'cbor-x'
import mqtt from 'mqtt'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { startGateway } from '../../gateway/index.js'
import type { MqttBroker } from '../../gateway/broker/mqtt-broker.js'
import { createMessageIdFactory } from '../../runtime/index.js'
import { freshAedes } from '../helpers/aedes.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { unreadFifo } from '../helpers/fifo.js'
import { freePort, until } from '../helpers/wait.js'

const jsonLines = (out: string): Record<string, unknown>[] =>
  out.split('\n').filter((l) => l.trim() !== '').map((l) => {
    try {
      return JSON.parse(l) as Record<string, unknown>
    } catch {
      throw new Error(`not a JSON line: ${l}`)
    }
  })

describe('logging', () => {
  const cleanup = cleanupAfterEach()

  /** Starts a process with piped output; SIGTERM ends it after the test if it is still running. */
  const start = (args: string[], env: Record<string, string> = {}): { proc: ChildProcess; out: () => string; exited: Promise<number | null> } => {
    // A gateway without a config file serves HTTP on 8080 and keeps gateway.db in .outpost/gateway by default:
    // each gets a free port and a folder of its own, so that two can run at once.
    const gatewayEnv = { OUTPOST_HTTP_PORT: '0', OUTPOST_GATEWAY_DATA_DIR: tempDir() }
    const proc = spawn(process.execPath, args, { env: { ...process.env, ...gatewayEnv, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    proc.stdout!.on('data', (c: Buffer) => (out += c.toString()))
    proc.stderr!.on('data', (c: Buffer) => (out += c.toString()))
    const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)))
    cleanup(async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM')
        await exited
      }
    })
    return { proc, out: () => out, exited }
  }
  const tempDir = (): string => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-logging-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    return dir
  }
  const aedes = async (): Promise<MqttBroker> => {
    const broker = await freshAedes()
    cleanup(() => broker.close())
    return broker
  }

  it('the standalone gateway writes JSON lines when piped and readable lines when asked', async () => {
    const json = start(['bin/outpost.js', 'gateway', '--port', String(await freePort())])
    await until(() => json.out().includes('gateway ready'), 30_000)
    const ready = jsonLines(json.out()).find((l) => l.msg === 'gateway ready')
    expect(ready).toMatchObject({ device: 'gateway', level: 30 })

    const pretty = start(['bin/outpost.js', 'gateway', '--port', String(await freePort()), '--log-format', 'pretty'])
    await until(() => /\[gateway {2}\] gateway ready/.test(pretty.out()), 30_000).catch(() => expect.fail(`no readable ready line:\n${pretty.out()}`))
    expect(pretty.out()).not.toContain('{"level"')
  }, 60_000)

  it('the gateway honours OUTPOST_LOG_LEVEL', async () => {
    const port = await freePort()
    const gw = start(['bin/outpost.js', 'gateway', '--port', String(port)], { OUTPOST_LOG_LEVEL: 'warn' })
    // Ready once its monitor has announced itself (retained presence), which comes after the lines it logs at start.
    let watcher: mqtt.MqttClient | undefined
    let announced = false
    cleanup(() => watcher?.end(true))
    await until(() => {
      if (watcher === undefined) {
        const c = mqtt.connect(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 200, connectTimeout: 2_000 })
        c.on('error', () => undefined)
        watcher = c
        c.on('connect', () => void c.subscribe('ob/gateway/status', { qos: 1 }))
        c.on('message', () => (announced = true))
      }
      return announced
    }, 30_000)
    watcher!.end(true)
    gw.proc.kill('SIGTERM')
    expect(await gw.exited).toBe(0)
    const lines = jsonLines(gw.out())
    expect(lines.filter((l) => Number(l.level) < 40)).toEqual([])
  }, 60_000)

  it('the demo writes its own lines and its devices\' as JSON lines when piped', async () => {
    const demo = start(['bin/outpost.js', 'demo', '--port', '0', '--duration', '5', '--outage', '0'], { OUTPOST_DATA_DIR: tempDir(), OUTPOST_SAMPLE_MS: '300' })
    expect(await demo.exited).toBe(0)
    const lines = jsonLines(demo.out())
    const from = new Set(lines.map((l) => l.device))
    expect([...from]).toEqual(expect.arrayContaining(['demo', 'gateway', 'thermo-1', 'display-1']))
    expect(lines.some((l) => l.device === 'display-1' && typeof l.msg === 'string' && l.msg.startsWith('display shows'))).toBe(true)
  }, 60_000)

  it('the demo, whose log reader stops reading, goes on, drops and counts lines instead of keeping them in memory, and stops on SIGTERM', async () => {
    const dir = tempDir()
    const pipe = unreadFifo(dir)
    cleanup(() => pipe.close())
    const env = { ...process.env, OUTPOST_HTTP_PORT: '0', OUTPOST_GATEWAY_DATA_DIR: tempDir(), OUTPOST_DATA_DIR: path.join(dir, 'data'), OUTPOST_SAMPLE_MS: '20' }
    const demo = spawn(process.execPath, ['bin/outpost.js', 'demo', '--port', '0', '--outage', '0'], { env, stdio: ['ignore', pipe.writeEnd, 'pipe'] })
    const exited = new Promise<number | null>((r) => demo.once('exit', (code) => r(code)))
    cleanup(async () => {
      if (demo.exitCode === null && demo.signalCode === null) {
        demo.kill('SIGKILL')
        await exited
      }
    })
    // Two devices sampling every 20 ms fill the pipe's 64 KiB in a few seconds.
    await new Promise((r) => setTimeout(r, 12_000))
    // The reader comes back: what arrives is whole JSON lines, among them the count of those dropped.
    const text = await pipe.readFor(3_000)
    expect(demo.exitCode).toBeNull()
    const lines = jsonLines(text.slice(0, text.lastIndexOf('\n') + 1))
    // Before: Node's stream for the pipe kept every line in memory, for as long as the reader stalled.
    const notes = lines.filter((l) => typeof l.msg === 'string' && /^\d+ log lines? dropped: the output was not read, or too slowly$/.test(l.msg))
    expect(notes.length, `no note of dropped lines among ${lines.length} lines`).toBeGreaterThanOrEqual(1)
    expect(lines.some((l) => l.device === 'thermo-1')).toBe(true)
    demo.kill('SIGTERM')
    expect(await exited).toBe(0)
  }, 60_000)

  it('a device, under the CLI or on its own, writes readable lines when asked and JSON when piped', async () => {
    const broker = await aedes()
    const underCli = start(['bin/outpost.js', 'device', 'display', '--url', broker.url, '--id', 'log-a', '--log-format', 'pretty'], { OUTPOST_DATA_DIR: tempDir() })
    await until(() => /\[log-a {4}\] ready/.test(underCli.out()), 30_000).catch(() => expect.fail(`no readable ready line:\n${underCli.out()}`))

    const piped = start(['bin/outpost.js', 'device', 'display', '--url', broker.url, '--id', 'log-b'], { OUTPOST_DATA_DIR: tempDir() })
    await until(() => piped.out().includes('"msg":"ready"'), 30_000).catch(() => expect.fail(`no JSON ready line:\n${piped.out()}`))
    expect(jsonLines(piped.out()).find((l) => l.msg === 'ready')).toMatchObject({ device: 'log-b' })

    const alone = start(['--import', 'tsx', 'devices/display/main.ts'], { OUTPOST_MQTT_URL: broker.url, OUTPOST_DEVICE_ID: 'log-c', OUTPOST_LOG_FORMAT: 'pretty' })
    await until(() => /\[log-c {4}\] ready/.test(alone.out()), 30_000).catch(() => expect.fail(`no readable ready line:\n${alone.out()}`))
  }, 90_000)

  it('a device on a terminal writes readable lines unasked; into a file or /dev/null, JSON lines', async () => {
    const broker = await aedes()
    const dir = tempDir()
    // A real terminal: script(1) runs the device on a pseudo-terminal of its own and copies what it shows.
    const device = `${JSON.stringify(process.execPath)} --import tsx devices/display/main.ts`
    const onTerminal = spawn('script', ['-qfec', device, '/dev/null'], { env: { ...process.env, OUTPOST_MQTT_URL: broker.url, OUTPOST_DEVICE_ID: 'log-tty', OUTPOST_DATA_DIR: dir }, stdio: ['pipe', 'pipe', 'pipe'] })
    let shown = ''
    onTerminal.stdout.on('data', (c: Buffer) => (shown += c.toString()))
    const ended = new Promise((r) => onTerminal.once('exit', r))
    cleanup(async () => {
      if (onTerminal.exitCode === null) {
        onTerminal.kill('SIGTERM')
        await ended
      }
    })
    await until(() => /\[log-tty {2}\] ready/.test(shown), 30_000).catch(() => expect.fail(`no readable ready line on the terminal:\n${shown}`))
    expect(shown).not.toContain('"msg":"ready"')

    // Standard output a file, then /dev/null (a character device, but no terminal): JSON lines, and no failure.
    const file = path.join(dir, 'out.log')
    for (const [target, id] of [[file, 'log-file'], ['/dev/null', 'log-null']] as const) {
      const fd = openSync(target, 'w')
      const proc = spawn(process.execPath, ['--import', 'tsx', 'devices/display/main.ts'], { env: { ...process.env, OUTPOST_MQTT_URL: broker.url, OUTPOST_DEVICE_ID: id, OUTPOST_DATA_DIR: dir }, stdio: ['ignore', fd, 'pipe'] })
      closeSync(fd)
      const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)))
      await until(() => broker.aedes.connectedClients > 0 && [...Object.keys((broker.aedes as unknown as { clients: Record<string, unknown> }).clients)].includes(id), 30_000)
      proc.kill('SIGTERM')
      expect(await exited).toBe(0)
    }
    const lines = jsonLines(readFileSync(file, 'utf8'))
    expect(lines.find((l) => l.msg === 'ready')).toMatchObject({ device: 'log-file' })
  }, 90_000)

  it('a gateway, and a device writing readable lines, whose log reader has gone (EPIPE) go on serving, and stop cleanly', async () => {
    const broker = await aedes()
    const port = await freePort()
    const procs = [
      spawn(process.execPath, ['bin/outpost.js', 'gateway', '--port', String(port)], { env: { ...process.env, OUTPOST_HTTP_PORT: '0', OUTPOST_GATEWAY_DATA_DIR: tempDir() }, stdio: ['ignore', 'pipe', 'pipe'] }),
      spawn(process.execPath, ['--import', 'tsx', 'devices/display/main.ts'], { env: { ...process.env, OUTPOST_MQTT_URL: broker.url, OUTPOST_DEVICE_ID: 'log-epipe', OUTPOST_DATA_DIR: tempDir(), OUTPOST_LOG_FORMAT: 'pretty' }, stdio: ['ignore', 'pipe', 'pipe'] }),
    ]
    const exits = procs.map((p) => new Promise<number | null>((r) => p.once('exit', (code) => r(code))))
    cleanup(() => void procs.forEach((p) => p.exitCode === null && p.kill('SIGKILL')))
    // The reader goes: every line written from now on fails with EPIPE.
    for (const p of procs) p.stdout!.destroy()
    const gatewayUp = async (): Promise<boolean> => {
      const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: 'log-probe', reconnectPeriod: 0, connectTimeout: 1_000 }).catch(() => undefined)
      await c?.endAsync()
      return c !== undefined
    }
    const deadline = Date.now() + 30_000
    while (!(await gatewayUp())) {
      if (Date.now() > deadline) expect.fail('the gateway never took a connection')
      await new Promise((r) => setTimeout(r, 200))
    }
    await until(() => Object.keys((broker.aedes as unknown as { clients: Record<string, unknown> }).clients).includes('log-epipe'), 30_000)
    // Lines go on being written (clients come and go; the device's connection): both still serve.
    for (let i = 0; i < 5; i++) expect(await gatewayUp()).toBe(true)
    expect(procs.map((p) => p.exitCode)).toEqual([null, null])
    for (const p of procs) p.kill('SIGTERM')
    expect(await Promise.all(exits)).toEqual([0, 0])
  }, 90_000)

  it('the gateway logs events at debug and a client reconnecting in a loop once, with a count', async () => {
    const lines: Record<string, unknown>[] = []
    const logger = pino({ level: 'debug', base: { device: 'gateway' } }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) })
    // An interval no slow machine outlasts during the test: one line per client and kind, whatever the pace.
    const gw = await startGateway({ port: 0, logger, clientLogIntervalMs: 600_000 })
    cleanup(() => gw.close())

    // A flood of valid events, written by hand as any client on the broker could (envelope v1, runtime/wire/README.md).
    const enc = new Encoder({ useRecords: false })
    const ids = createMessageIdFactory()
    const flood = await mqtt.connectAsync(gw.broker.url, { clientId: 'flooder' })
    const events = 2_000
    for (let i = 0; i < events; i += 100) {
      await Promise.all(Array.from({ length: 100 }, (_, k) =>
        flood.publishAsync('ob/flooder/evt/flood/1/tick', enc.encode([1, 2, ids(), 'flooder', 'f1', Date.now(), 'flood', '1', 'tick', null, null, null, null, null, null, null, { n: i + k }]), { qos: 1 })))
    }
    await flood.endAsync()
    await until(() => gw.runtime.stats().eventsHandled >= events, 30_000)
    const eventLines = lines.filter((l) => l.msg === 'event')
    expect(eventLines.length).toBe(events)
    expect(eventLines.every((l) => l.level === 20)).toBe(true)

    // One client id connecting and disconnecting in a loop (what two processes with one id do).
    let disconnects = 0
    gw.broker.aedes.on('clientDisconnect', (c) => void (c.id === 'looper' && disconnects++))
    const rounds = 60
    for (let i = 0; i < rounds; i++) {
      const c = await mqtt.connectAsync(gw.broker.url, { clientId: 'looper', reconnectPeriod: 0 })
      await c.endAsync()
    }
    await until(() => disconnects === rounds, 30_000)
    const about = (msg: string): Record<string, unknown>[] => lines.filter((l) => String(l.msg).startsWith(msg) && l.client === 'looper')
    expect(about('device connected')).toHaveLength(1)
    expect(about('device disconnected')).toHaveLength(1)
    // Lines at info or above stay few, whatever the flood.
    expect(lines.filter((l) => Number(l.level) >= 30).length).toBeLessThan(20)
  }, 90_000)
})
