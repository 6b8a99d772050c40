// The gateway's HTTP face, on a real gateway with HTTP on a free port: health, readiness (also
// during a drill), Prometheus metrics that move as messages flow, the fleet registry as JSON,
// the bearer token, a taken port, and a close that does not wait for idle keep-alive connections.
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import mqtt from 'mqtt'
import { pino } from 'pino'
import * as v from 'valibot'
import { describe, expect, it } from 'vitest'
import { defaultGatewayConfig } from '../../gateway/config/gateway-config.js'
import { startHttpServer } from '../../gateway/http/http-server.js'
import { kindOfTopic } from '../../gateway/http/traffic.js'
import { startGateway, type Gateway } from '../../gateway/index.js'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createRuntime, defineContract, defineService } from '../../runtime/index.js'
import { caught } from '../helpers/caught.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { freePort, until } from '../helpers/wait.js'

const quiet = pino({ level: 'silent' })
const TOKEN = 'a-long-random-token-for-the-test'

/** One sample of a Prometheus text exposition. */
interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*'
const LABEL = '[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\.)*"'
// As Prometheus reads it (Go's ParseFloat): NaN and Inf in any case.
const VALUE = '(?:[+-]?(?:\\d+\\.?\\d*(?:[eE][+-]?\\d+)?|\\.\\d+(?:[eE][+-]?\\d+)?|[iI][nN][fF])|[nN][aA][nN])'
const SAMPLE = new RegExp(`^(${NAME})(?:\\{((?:${LABEL})(?:,${LABEL})*,?)?\\})? (${VALUE})(?: -?\\d+)?$`)
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped'])

/**
 * Parses Prometheus text format 0.0.4 strictly: every line is empty, a HELP, a TYPE or a sample
 * of a family whose TYPE came first. @throws on the first line that is none of these.
 */
function parsePrometheus(text: string): Sample[] {
  const families = new Map<string, string>()
  const samples: Sample[] = []
  const lines = text.split('\n')
  if (lines.at(-1) === '') lines.pop()
  for (const line of lines) {
    // Empty lines are allowed between families and carry nothing.
    if (line === '') continue
    if (line.startsWith('# HELP ')) {
      if (!new RegExp(`^# HELP ${NAME} .*$`).test(line)) throw new Error(`bad HELP line: ${line}`)
      continue
    }
    if (line.startsWith('# TYPE ')) {
      const [, , name, type] = line.split(' ')
      if (name === undefined || !new RegExp(`^${NAME}$`).test(name) || !TYPES.has(type ?? '')) throw new Error(`bad TYPE line: ${line}`)
      families.set(name, type!)
      continue
    }
    const m = SAMPLE.exec(line)
    if (m === null) throw new Error(`bad sample line: ${line}`)
    const name = m[1]!
    const family = [name, name.replace(/_(bucket|sum|count|total|created)$/, '')].find((n) => families.has(n))
    if (family === undefined) throw new Error(`sample of no declared family: ${line}`)
    const labels: Record<string, string> = {}
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"/g)) labels[l[1]!] = l[2]!
    const raw = m[3]!
    const special = raw.toLowerCase()
    samples.push({ name, labels, value: special === 'nan' ? NaN : special.endsWith('inf') ? (special.startsWith('-') ? -Infinity : Infinity) : Number(raw) })
  }
  return samples
}

/** The value of the one sample with this name and these labels; 0 when there is none. */
const valueOf = (samples: Sample[], name: string, labels: Record<string, string> = {}): number =>
  samples.find((s) => s.name === name && Object.entries(labels).every(([k, val]) => s.labels[k] === val))?.value ?? 0

const run = promisify(execFile)

const beacon = defineContract({ name: 'beacon', version: '1', commands: { ping: { payload: v.object({}), result: v.object({ ok: v.boolean() }) } } })
const beaconService = defineService(beacon, { commands: { ping: () => ({ ok: true }) } })

describe('gateway HTTP face', () => {
  const cleanup = cleanupAfterEach()

  const gateway = async (over: { token?: string; auth?: boolean } = {}): Promise<Gateway> => {
    const config = defaultGatewayConfig()
    config.http = { enabled: true, host: '127.0.0.1', port: 0, ...('token' in over ? { token: over.token } : { token: TOKEN }) }
    config.auth.enabled = over.auth ?? false
    const gw = await startGateway({ config, port: 0, logger: quiet })
    cleanup(() => gw.close())
    return gw
  }
  /** GET with the right token, another one, or none (null). */
  const get = (gw: Gateway, path: string, token: string | null = TOKEN): Promise<Response> =>
    fetch(`${gw.http!.url}${path}`, { headers: token === null ? {} : { authorization: `Bearer ${token}` } })
  const metrics = async (gw: Gateway): Promise<Sample[]> => {
    const res = await get(gw, '/metrics')
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/)
    return parsePrometheus(await res.text())
  }

  it('listens on 127.0.0.1 by default; /healthz asks for no token, every other route for the right one', async () => {
    const gw = await gateway()
    expect(gw.http!.url).toBe(`http://127.0.0.1:${gw.http!.port}`)
    for (const token of [null, 'wrong']) {
      const health = await get(gw, '/healthz', token)
      expect(health.status).toBe(200)
      expect(await health.json()).toEqual({ status: 'ok' })
    }
    for (const path of ['/readyz', '/metrics', '/devices', '/devices/x', '/no-such-route']) {
      const missing = await get(gw, path, null)
      expect(missing.status).toBe(401)
      expect(missing.headers.get('www-authenticate')).toBe('Bearer realm="outpost-gateway"')
      expect(await missing.json()).toEqual({ error: { code: 'NOT_AUTHENTICATED', message: 'a bearer token is required' } })
      const wrong = await get(gw, path, `${TOKEN}x`)
      expect(wrong.status).toBe(401)
      expect(wrong.headers.get('www-authenticate')).toBe('Bearer realm="outpost-gateway", error="invalid_token"')
      expect((await wrong.json()) as unknown).toMatchObject({ error: { code: 'NOT_AUTHENTICATED' } })
    }
    // Not a bearer token: refused as missing.
    const basic = await fetch(`${gw.http!.url}/readyz`, { headers: { authorization: `Basic ${Buffer.from(`u:${TOKEN}`).toString('base64')}` } })
    expect(basic.status).toBe(401)
    expect((await get(gw, '/readyz')).status).toBe(200)
    // The scheme's name is case-insensitive (RFC 7235).
    expect((await fetch(`${gw.http!.url}/readyz`, { headers: { authorization: `bearer ${TOKEN}` } })).status).toBe(200)
    const unknown = await get(gw, '/no-such-route')
    expect(unknown.status).toBe(404)
    expect(await unknown.json()).toEqual({ error: { code: 'NOT_FOUND', message: 'no route GET /no-such-route' } })
    // A route that is there for another method: 405, with the methods it takes.
    const post = await fetch(`${gw.http!.url}/devices`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } })
    expect([post.status, post.headers.get('allow')]).toEqual([405, 'GET'])
    expect(await post.json()).toEqual({ error: { code: 'BAD_ARGUMENT', message: 'POST is not taken on /devices; expected GET' } })
    const del = await fetch(`${gw.http!.url}/devices/thermo-1`, { method: 'DELETE', headers: { authorization: `Bearer ${TOKEN}` } })
    expect([del.status, del.headers.get('allow')]).toEqual([405, 'GET'])
    // Without the token, the token is asked for first.
    expect((await fetch(`${gw.http!.url}/devices/thermo-1`, { method: 'DELETE' })).status).toBe(401)
  })

  it('without a token, every route answers anyone', async () => {
    const gw = await gateway({ token: undefined })
    expect((await get(gw, '/readyz', null)).status).toBe(200)
    expect((await get(gw, '/devices', null)).status).toBe(200)
  })

  it('/readyz is 503 naming the broker while a drill has it down, and 200 once it is back', async () => {
    const gw = await gateway()
    const ready = await get(gw, '/readyz')
    expect(ready.status).toBe(200)
    expect(await ready.json()).toEqual({ ready: true, checks: { broker: true, database: true }, notReady: [] })
    expect(valueOf(await metrics(gw), 'outpost_gateway_broker_up')).toBe(1)
    // Not ready from the moment the drill begins (the broker is down for 3 s).
    const drill = gw.interrupt(3_000)
    let down = await get(gw, '/readyz')
    expect(down.status).toBe(503)
    expect(await down.json()).toEqual({ ready: false, checks: { broker: false, database: true }, notReady: ['broker'] })
    expect(valueOf(await metrics(gw), 'outpost_gateway_broker_up')).toBe(0)
    // Liveness holds all along.
    expect((await get(gw, '/healthz', null)).status).toBe(200)
    await drill
    down = await get(gw, '/readyz')
    expect(down.status).toBe(200)
    expect(valueOf(await metrics(gw), 'outpost_gateway_broker_up')).toBe(1)
  }, 60_000)

  it('/metrics is Prometheus text: process metrics, devices online, connections, and messages and bytes by kind that move as messages flow', async () => {
    const gw = await gateway()
    const before = await metrics(gw)
    // prom-client's process metrics, on the gateway's own registry.
    expect(before.some((s) => s.name === 'process_cpu_user_seconds_total')).toBe(true)
    expect(before.some((s) => s.name === 'nodejs_heap_size_used_bytes')).toBe(true)
    for (const kind of ['cmd', 'rep', 'evt', 'status', 'other']) expect(before.some((s) => s.name === 'outpost_gateway_messages_total' && s.labels.kind === kind && s.labels.direction === 'in')).toBe(true)

    // A device comes online; a subscriber and a publisher exchange events.
    const device = createRuntime({ bridge: createMqttBridge({ url: gw.broker.url, deviceId: 'beacon-1' }), services: [beaconService], logger: quiet })
    await device.start({ waitForBroker: true })
    cleanup(() => device.stop({ drainMs: 100 }))
    // Online, and its contract document (ob/beacon-1/contract, counted as other) is in.
    await until(() => gw.registry.online() === 1 && gw.registry.contract('beacon-1') !== undefined, 30_000)
    const sub = await mqtt.connectAsync(gw.broker.url, { clientId: 'watcher', reconnectPeriod: 0 })
    cleanup(() => sub.endAsync(true))
    let heard = 0
    sub.on('message', () => heard++)
    await sub.subscribeAsync('ob/+/evt/#', { qos: 1 })
    const pub = await mqtt.connectAsync(gw.broker.url, { clientId: 'emitter', reconnectPeriod: 0 })
    cleanup(() => pub.endAsync(true))
    const N = 25
    const payload = Buffer.alloc(100, 1)
    // The QoS 0 message first: the broker takes one connection's packets in order, so it is counted once the last event is heard.
    await pub.publishAsync('somewhere/else', Buffer.from('x'), { qos: 0 })
    for (let i = 0; i < N; i++) await pub.publishAsync('ob/emitter/evt/temp/1/sample', payload, { qos: 1 })
    await until(() => heard === N, 30_000)

    const after = await metrics(gw)
    const moved = (name: string, labels: Record<string, string>): number => valueOf(after, name, labels) - valueOf(before, name, labels)
    expect(moved('outpost_gateway_messages_total', { direction: 'in', kind: 'evt' })).toBe(N)
    expect(moved('outpost_gateway_messages_total', { direction: 'out', kind: 'evt' })).toBeGreaterThanOrEqual(N)
    expect(moved('outpost_gateway_message_bytes_total', { direction: 'in', kind: 'evt' })).toBe(N * payload.length)
    expect(moved('outpost_gateway_messages_total', { direction: 'in', kind: 'status' })).toBeGreaterThanOrEqual(1)
    // The QoS 0 message and the device's contract document.
    expect(moved('outpost_gateway_messages_total', { direction: 'in', kind: 'other' })).toBe(2)
    expect(valueOf(after, 'outpost_gateway_devices_online')).toBe(1)
    expect(valueOf(after, 'outpost_gateway_devices_known')).toBe(1)
    // The gateway's own monitor, the device, the watcher and the emitter.
    expect(valueOf(after, 'outpost_gateway_clients_connected')).toBeGreaterThanOrEqual(4)
    // Counters never go back: a second scrape reads at least as much.
    const again = await metrics(gw)
    expect(valueOf(again, 'outpost_gateway_messages_total', { direction: 'in', kind: 'evt' })).toBeGreaterThanOrEqual(valueOf(after, 'outpost_gateway_messages_total', { direction: 'in', kind: 'evt' }))
  }, 60_000)

  it('/metrics counts refused logins by reason and ignored status frames by reason', async () => {
    const gw = await gateway({ auth: true })
    for (const opts of [{}, { username: 'ghost', password: 'nope' }]) {
      const c = mqtt.connect(gw.broker.url, { clientId: 'ghost', reconnectPeriod: 0, connectTimeout: 10_000, ...opts })
      c.on('error', () => {})
      await new Promise<void>((r) => c.once('close', () => r()))
      c.end(true)
    }
    await until(() => Object.values(gw.auth!.stats().refused).reduce((a, b) => a + b, 0) === 2, 30_000)
    const samples = await metrics(gw)
    for (const [reason, n] of Object.entries(gw.auth!.stats().refused)) expect(valueOf(samples, 'outpost_gateway_auth_refused_total', { reason })).toBe(n)
    expect(valueOf(samples, 'outpost_gateway_auth_refused_total', { reason: 'anonymous' })).toBe(1)

    const open = await gateway()
    const c = await mqtt.connectAsync(open.broker.url, { clientId: 'junk', reconnectPeriod: 0 })
    cleanup(() => c.endAsync(true))
    await c.publishAsync('ob/junk/status', Buffer.from([0xff, 0x00]), { qos: 1 })
    await until(() => open.registry.stats().ignored.malformed === 1, 30_000)
    expect(valueOf(await metrics(open), 'outpost_gateway_presence_ignored_total', { reason: 'malformed' })).toBe(1)
  }, 60_000)

  it('past 256 connections, idle ones give their places once no longer new, never one a request is being answered on, pipelined ones included', async () => {
    const gw = await gateway()
    const slow = defineContract({ name: 'slow', version: '1', commands: { wait: { payload: v.object({}), result: v.object({ ok: v.boolean() }) } } })
    const service = defineService(slow, { commands: { wait: async () => (await new Promise((r) => setTimeout(r, 1_500)), { ok: true }) } })
    const device = createRuntime({ bridge: createMqttBridge({ url: gw.broker.url, deviceId: 'slow-1' }), services: [service], logger: quiet })
    await device.start({ waitForBroker: true })
    cleanup(() => device.stop({ drainMs: 100 }))
    await until(() => gw.registry.online() === 1, 30_000)
    const { port } = new URL(gw.http!.url)
    // Two requests on one connection, the second a command that takes 1.5 s: once the first is
    // answered, the connection is still being answered (it was taken as idle, and cut).
    const a = net.connect(Number(port), '127.0.0.1')
    let text = ''
    a.setEncoding('utf8').on('data', (d: string) => (text += d))
    const closed = new Promise<void>((r) => a.once('close', () => r()))
    a.write(`GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nPOST /devices/slow-1/commands/slow/1/wait HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`)
    await until(() => text.includes('HTTP/1.1 200'), 10_000)
    const silent: net.Socket[] = []
    cleanup(() => silent.forEach((s) => s.destroy()))
    for (let i = 0; i < 300; i++) silent.push(net.connect(Number(port), '127.0.0.1').on('error', () => undefined))
    await closed
    expect(text.match(/HTTP\/1\.1 200/g)).toHaveLength(2)
    expect(text).toContain('{"result":{"ok":true}}')
    // The silent ones that were oldest gave their places, once 2 s old.
    await until(() => silent.filter((s) => s.destroyed || s.readyState === 'closed').length >= 300 - 256, 10_000)
  }, 60_000)

  it('a burst of 500 callers with the token at once: every one answered, none cut to make room', async () => {
    const gw = await gateway()
    const device = createRuntime({ bridge: createMqttBridge({ url: gw.broker.url, deviceId: 'burst-1' }), services: [beaconService], logger: quiet })
    await device.start({ waitForBroker: true })
    cleanup(() => device.stop({ drainMs: 100 }))
    await until(() => gw.registry.online() === 1, 30_000)
    // From another process (Node's fetch), as a cloud service would call: the connections arrive
    // faster than this process reads them, and those accepted first were closed before they were read.
    const script = `const r = await Promise.all(Array.from({ length: 500 }, () => fetch(process.argv[1], { method: 'POST', headers: { authorization: 'Bearer ${TOKEN}', 'content-type': 'application/json' }, body: '{}' }).then((x) => String(x.status), (e) => String(e.cause?.code ?? e.name)))); console.log(JSON.stringify(r))`
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script, `${gw.http!.url}/devices/burst-1/commands/beacon/1/ping`], { timeout: 50_000 })
    const answers = JSON.parse(stdout) as string[]
    expect(answers.filter((a) => a !== '200')).toEqual([])
  }, 60_000)

  it('with 300 command calls held for an offline device (each being answered), /healthz still answers a probe', async () => {
    const gw = await gateway()
    const device = createRuntime({ bridge: createMqttBridge({ url: gw.broker.url, deviceId: 'away-1' }), services: [beaconService], logger: quiet })
    await device.start({ waitForBroker: true })
    await until(() => gw.registry.online() === 1, 30_000)
    await device.stop({ drainMs: 100 })
    await until(() => gw.registry.online() === 0, 30_000)
    const { port } = new URL(gw.http!.url)
    const held: net.Socket[] = []
    cleanup(() => held.forEach((s) => s.destroy()))
    const answered = { n: 0 }
    for (let i = 0; i < 300; i++) {
      // In steps, as calls arrive: a socket whose request has not been read yet is one that may give its place.
      if (i % 50 === 0) await new Promise((r) => setTimeout(r, 300))
      const sock = net.connect(Number(port), '127.0.0.1').on('error', () => undefined)
      sock.on('data', () => void answered.n++)
      sock.write(`POST /devices/away-1/commands/beacon/1/ping?offline=hold&timeoutMs=60000 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}`)
      held.push(sock)
    }
    await until(() => held.every((s) => s.readyState === 'open'), 10_000)
    // Their requests read and held (the held calls are counted in /metrics' own terms by the router).
    await new Promise((r) => setTimeout(r, 1_000))
    const probe = await fetch(`${gw.http!.url}/healthz`, { signal: AbortSignal.timeout(5_000) })
    expect(probe.status).toBe(200)
    // The held calls are still held: none was answered or cut to make room.
    expect(answered.n).toBe(0)
    expect(held.filter((s) => s.destroyed)).toHaveLength(0)
  }, 60_000)

  it('/devices and /devices/:id serve the registry; an unknown device is a 404 with NOT_FOUND', async () => {
    const gw = await gateway()
    const device = createRuntime({ bridge: createMqttBridge({ url: gw.broker.url, deviceId: 'beacon-2' }), services: [beaconService], messaging: { instanceId: 'b2' }, logger: quiet })
    await device.start({ waitForBroker: true })
    cleanup(() => device.stop({ drainMs: 100 }))
    await until(() => gw.registry.online() === 1, 30_000)
    const list = await get(gw, '/devices')
    expect(list.status).toBe(200)
    expect(list.headers.get('content-type')).toMatch(/^application\/json/)
    const body = (await list.json()) as { devices: unknown[] }
    expect(body.devices).toHaveLength(1)
    expect(body.devices[0]).toMatchObject({ device: 'beacon-2', online: true, instance: 'b2', services: [{ name: 'beacon', version: '1', commands: ['ping'] }] })
    const one = await get(gw, '/devices/beacon-2')
    expect(one.status).toBe(200)
    expect(await one.json()).toEqual(body.devices[0])
    const missing = await get(gw, '/devices/nobody')
    expect(missing.status).toBe(404)
    expect(await missing.json()).toEqual({ error: { code: 'NOT_FOUND', message: 'no device "nobody" in the registry' } })
    // Encoded characters reach the lookup decoded, and find nothing.
    expect((await get(gw, '/devices/%2F..%2Fetc')).status).toBe(404)
  }, 60_000)

  it('a taken port is PORT_IN_USE; close() stops accepting and closes idle keep-alive connections', async () => {
    const gw = await gateway()
    const view = { broker: () => gw.broker, databaseWritable: () => true, registry: gw.registry, auth: () => ({ refused: {}, deniedPublish: {}, deniedSubscribe: {}, kicked: 0 }) }
    const err = await caught(startHttpServer({ host: '127.0.0.1', port: gw.http!.port, view, log: quiet }))
    expect(err).toMatchObject({ code: 'PORT_IN_USE', details: { host: '127.0.0.1', port: gw.http!.port, listener: 'http' } })

    const server = await startHttpServer({ host: '127.0.0.1', port: 0, view, log: quiet })
    cleanup(() => server.close())
    expect(server.url).toBe(`http://127.0.0.1:${server.port}`)
    // A keep-alive connection left idle after its response.
    const agent = new http.Agent({ keepAlive: true })
    cleanup(() => agent.destroy())
    // (In an object: a promise resolved with a promise would wait for it.)
    const idle = await new Promise<{ closed: Promise<void> }>((resolve, reject) => {
      const req = http.get(`${server.url}/healthz`, { agent }, (res) => {
        res.resume()
        res.on('end', () => resolve({ closed: new Promise<void>((r) => req.socket!.once('close', () => r())) }))
      })
      req.on('error', reject)
    })
    // close() resolves once every connection is gone, this idle one included (closed by the server).
    await server.close()
    await idle.closed
    const refused = await new Promise<string | undefined>((r) => {
      const s = net.connect(server.port, '127.0.0.1')
      s.on('connect', () => {
        s.destroy()
        r(undefined)
      })
      s.on('error', (e: NodeJS.ErrnoException) => r(e.code))
    })
    expect(refused).toBe('ECONNREFUSED')
  })

  it('a gateway whose HTTP port is taken fails with PORT_IN_USE and leaves its MQTT port and gateway.db free', async () => {
    const holder = await gateway()
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-http-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    const mqttPort = await freePort()
    const config = defaultGatewayConfig()
    config.dataDir = dir
    config.http = { enabled: true, host: '127.0.0.1', port: holder.http!.port }
    const err = await caught(startGateway({ config, port: mqttPort, logger: quiet }))
    expect(err).toMatchObject({ code: 'PORT_IN_USE', details: { listener: 'http', port: holder.http!.port } })
    // The same MQTT port and data folder (its lock) serve the next try.
    config.http.port = 0
    const gw = await startGateway({ config, port: mqttPort, logger: quiet })
    cleanup(() => gw.close())
    expect(gw.broker.port).toBe(mqttPort)
    expect((await get(gw, '/healthz', null)).status).toBe(200)
  })

  it('names each message kind from its topic', () => {
    expect(kindOfTopic('ob/a/cmd/b/svc/1/go')).toBe('cmd')
    expect(kindOfTopic('ob/a/rep/b')).toBe('rep')
    expect(kindOfTopic('ob/a/evt/svc/1/e')).toBe('evt')
    expect(kindOfTopic('ob/a/status')).toBe('status')
    expect(kindOfTopic('ob/a/status/x')).toBe('other')
    expect(kindOfTopic('obx/a/status')).toBe('other')
    expect(kindOfTopic('ob')).toBe('other')
    expect(kindOfTopic('site/a/evt/x', 'site')).toBe('evt')
  })
})
