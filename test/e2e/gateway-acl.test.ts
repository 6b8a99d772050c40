// Issue 13's attacks on the gateway's broker, each tried as an outsider would: plain MQTT.js
// clients and mosquitto_pub / mosquitto_sub with device credentials, against a real gateway
// (aedes, device table in a temporary gateway.db) with authentication on. Each must fail.
import { execFile } from 'node:child_process'
import net from 'node:net'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import { pino, type Logger } from 'pino'
import { describe, expect, it } from 'vitest'
import { defaultGatewayConfig } from '../../gateway/config/gateway-config.js'
import { createDeviceTable } from '../../gateway/devices/device-table.js'
import { startGateway, type Gateway } from '../../gateway/index.js'
import { openGatewayDatabase } from '../../gateway/store/gateway-database.js'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createRuntime, ErrorCode, type OutpostError } from '../../runtime/index.js'
import { watcherService, type Observed } from '../fixtures/services.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { commandSlots, eventSlots, presenceSlots, rawDecoder, rawFrame, replySlots } from '../helpers/raw-wire.js'
import { until } from '../helpers/wait.js'

const run = promisify(execFile)

/** The broker's live client with this id (aedes keeps them by id; its typings leave that out). */
const connected = (gw: Gateway, id: string): unknown => (gw.broker.aedes as unknown as { clients: Record<string, unknown> }).clients[id]
type Line = Record<string, unknown>

interface Setup {
  gw: Gateway
  url: string
  port: number
  lines: Line[]
  dataDir: string
  /** Adds a device to the gateway's table; its secret. */
  add(id: string, role?: string): string
  /** Topics the broker published from clients (what got past the gatekeeper). */
  routed: string[]
}

describe('gateway with authentication on: the attacks of issue 13 fail', () => {
  const cleanup = cleanupAfterEach()

  const setup = async (): Promise<Setup> => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'outpost-acl-'))
    cleanup(() => rmSync(dataDir, { recursive: true, force: true }))
    const lines: Line[] = []
    const logger: Logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Line) })
    const config = defaultGatewayConfig()
    config.auth.enabled = true
    config.auth.roles.narrow = { subscribe: ['ob/+/evt/thermo/1/+'] }
    config.dataDir = dataDir
    const gw = await startGateway({ config, port: 0, logger })
    cleanup(() => gw.close())
    const routed: string[] = []
    gw.broker.aedes.on('publish', (packet, client) => {
      if (client && client.id !== 'gateway') routed.push(packet.topic)
    })
    return { gw, url: gw.broker.url, port: gw.broker.port, lines, dataDir, routed, add: (id, role = 'device') => gw.devices.add(id, role).secret }
  }

  const connect = async (url: string, id: string, secret: string, o: IClientOptions = {}): Promise<MqttClient> => {
    const c = await mqtt.connectAsync(url, { clientId: id, username: id, password: secret, reconnectPeriod: 0, ...o })
    cleanup(() => c.endAsync(true))
    return c
  }

  // Each refused attempt comes from its own loopback address (127.0.0.2, .3, …): repeated
  // failures from one address are answered later and later (login-throttle.ts), which is not
  // what these tests are about.
  let nextAddress = 0
  /** The CONNACK return code of a refused connection (undefined when it was accepted). */
  const refusal = (url: string, o: IClientOptions, localAddress = `127.0.0.${2 + (nextAddress++ % 250)}`): Promise<number | undefined> =>
    new Promise((resolve) => {
      const port = Number(new URL(url).port)
      const c = new mqtt.MqttClient(() => net.createConnection({ port, host: '127.0.0.1', localAddress }), { reconnectPeriod: 0, connectTimeout: 30_000, ...o })
      c.once('connect', () => {
        c.end(true)
        resolve(undefined)
      })
      c.once('error', (err) => {
        c.end(true)
        resolve((err as { code?: number }).code)
      })
    })

  /** Publishes and waits until the broker closes the connection (a refused publish). */
  const publishClosed = async (c: MqttClient, topic: string, payload: Buffer, o: { retain?: boolean } = {}): Promise<void> => {
    const closed = new Promise<void>((r) => c.once('close', () => r()))
    c.publish(topic, payload, { qos: 1, retain: o.retain ?? false })
    await closed
  }

  /** Messages a client receives, by topic, as decoded envelopes (or raw text when not CBOR). */
  const collect = (c: MqttClient): { topic: string; src: unknown; payload: unknown; retained: boolean }[] => {
    const got: { topic: string; src: unknown; payload: unknown; retained: boolean }[] = []
    c.on('message', (topic, payload, packet) => {
      let a: unknown[] | undefined
      try {
        a = payload.length === 0 ? undefined : (rawDecoder.decode(payload) as unknown[])
      } catch {
        a = undefined
      }
      got.push({ topic, src: a?.[3], payload: a?.[16], retained: packet.retain })
    })
    return got
  }

  /** The QoS the broker granted a subscription, 128 when refused (MQTT.js calls that an error). */
  const granted = (c: MqttClient, filter: string): Promise<number> =>
    new Promise((resolve, reject) =>
      c.subscribe(filter, { qos: 1 }, (err, g) => {
        const refused = (err as { packet?: { granted?: number[] } } | undefined)?.packet?.granted?.[0]
        if (refused !== undefined) return resolve(refused)
        if (err) return reject(err)
        resolve(g![0]!.qos)
      }),
    )

  it('refuses anonymous clients, wrong and unknown credentials, revoked devices and a client id that is not the device id', async () => {
    const s = await setup()
    const secret = s.add('thermo-1')
    const other = s.add('display-1')
    expect(await refusal(s.url, { clientId: 'thermo-1' })).toBe(5)
    expect(await refusal(s.url, { clientId: 'thermo-1', username: 'thermo-1', password: 'not-the-secret' })).toBe(4)
    expect(await refusal(s.url, { clientId: 'ghost', username: 'ghost', password: secret })).toBe(4)
    // The right secret under another client id: an id is a session, and the session is the device's.
    expect(await refusal(s.url, { clientId: 'display-1', username: 'thermo-1', password: secret })).toBe(5)
    expect(await refusal(s.url, { clientId: 'anything', username: 'display-1', password: other })).toBe(5)
    s.gw.devices.revoke('display-1')
    expect(await refusal(s.url, { clientId: 'display-1', username: 'display-1', password: other })).toBe(4)
    // The gateway's own id, with a guess at its secret.
    expect(await refusal(s.url, { clientId: 'gateway', username: 'gateway', password: 'guess' })).toBe(4)
    expect(s.gw.auth!.stats().refused).toEqual({ anonymous: 1, 'wrong-secret': 2, unknown: 1, 'client-id': 2, revoked: 1 })
    // The right credentials still get in (a failure from this address slows answers, never refuses them).
    expect(await refusal(s.url, { clientId: 'thermo-1', username: 'thermo-1', password: secret })).toBeUndefined()
    // Refusals are logged once a minute per reason, not once per attempt.
    const refusedLines = s.lines.filter((l) => String(l.msg).startsWith('login refused'))
    expect(refusedLines.map((l) => l.reason).sort()).toEqual(['refused anonymous', 'refused client-id', 'refused revoked', 'refused unknown', 'refused wrong-secret'])
  }, 60_000)

  it('failed logins from one address are answered later and later, without holding up other addresses or the right secret', async () => {
    const s = await setup()
    const secret = s.add('thermo-1')
    const wrong = { clientId: 'thermo-1', username: 'thermo-1', password: 'guess' }
    for (let i = 0; i < 3; i++) expect(await refusal(s.url, wrong, '127.0.0.252')).toBe(4)
    // The fourth failure from that address is held (about a second); one from elsewhere is not.
    const order: string[] = []
    const repeated = refusal(s.url, wrong, '127.0.0.252').then((code) => order.push(`repeated ${code}`))
    const elsewhere = refusal(s.url, wrong, '127.0.0.253').then((code) => order.push(`elsewhere ${code}`))
    await Promise.all([repeated, elsewhere])
    expect(order).toEqual(['elsewhere 4', 'repeated 4'])
    expect(await refusal(s.url, { ...wrong, password: secret }, '127.0.0.252')).toBeUndefined()
    expect(s.gw.auth!.stats().refused).toEqual({ 'wrong-secret': 5 })
  }, 60_000)

  it('mosquitto_pub and mosquitto_sub with a wrong password are refused; with the device credentials they work within the namespace', async () => {
    const s = await setup()
    const secret = s.add('sensor-9')
    const wrong = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(s.port), '-i', 'sensor-9', '-u', 'sensor-9', '-P', 'wrong', '-t', 'ob/sensor-9/status', '-n', '-r']).catch((e: { code?: number; stderr?: string }) => e)
    expect((wrong as { code?: number }).code).not.toBe(0)
    expect(String((wrong as { stderr?: string }).stderr)).toMatch(/not authori[sz]ed|bad user name or password|refused/i)
    // With the device's credentials: its own events are read back by mosquitto_sub with the same role.
    const sub = run('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(s.port), '-i', 'sensor-9', '-u', 'sensor-9', '-P', secret, '-t', 'ob/+/evt/#', '-C', '1', '-W', '30'])
    await until(() => connected(s.gw, 'sensor-9') !== undefined, 30_000)
    // The subscriber holds the device's client id; the publisher is a second device.
    const pubSecret = s.add('sensor-8')
    const frame = rawFrame(eventSlots({ src: 'sensor-8', service: 'weather', name: 'wind', payload: { kmh: 12 } }))
    const file = path.join(s.dataDir, 'frame.cbor')
    writeFileSync(file, frame)
    // Not subscribed yet when the publish comes: publish until the subscriber has one.
    let out: { stdout: string } | undefined
    const done = sub.then((r) => (out = r))
    while (out === undefined) {
      await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(s.port), '-i', 'sensor-8', '-u', 'sensor-8', '-P', pubSecret, '-t', 'ob/sensor-8/evt/weather/1/wind', '-f', file, '-q', '1'])
      await Promise.race([done, new Promise((r) => setTimeout(r, 200))])
    }
    expect(Buffer.from(out.stdout, 'latin1').length).toBeGreaterThan(0)
    // mosquitto_sub with `#` is granted nothing (0x80): it reads none of the other devices' traffic.
    const all = await run('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(s.port), '-i', 'sensor-9', '-u', 'sensor-9', '-P', secret, '-t', '#', '-C', '1', '-W', '3', '-v']).catch((e: { code?: number; stdout?: string; stderr?: string }) => e)
    expect((all as { stdout?: string }).stdout ?? '').toBe('')
    expect(s.gw.auth!.stats().deniedSubscribe.namespace).toBeGreaterThanOrEqual(1)
    // mosquitto_pub of a retained "offline" for another device: the broker cuts it off, nothing is kept.
    const offline = rawFrame(presenceSlots({ src: 'sensor-9', online: false, services: [] }))
    writeFileSync(file, offline)
    await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(s.port), '-i', 'sensor-8', '-u', 'sensor-8', '-P', pubSecret, '-t', 'ob/sensor-9/status', '-f', file, '-q', '1', '-r']).catch(() => undefined)
    await until(() => (s.gw.auth!.stats().deniedPublish.namespace ?? 0) >= 1, 30_000)
    expect(s.routed).not.toContain('ob/sensor-9/status')
  }, 90_000)

  it('a device subscribing to # or to other devices’ commands and replies is granted 0x80 and reads nothing of them; it keeps its connection', async () => {
    const s = await setup()
    const att = await connect(s.url, 'att', s.add('att'))
    const narrow = await connect(s.url, 'nosy', s.add('nosy', 'narrow'))
    const victim = await connect(s.url, 'victim', s.add('victim'))
    const peer = await connect(s.url, 'peer', s.add('peer'))
    const seen = collect(att)
    const seenNarrow = collect(narrow)
    for (const f of ['#', '$SYS/#', 'ob/#', 'ob/+/cmd/+/#', 'ob/+/cmd/victim/#', 'ob/+/cmd/peer/echo/1/+', 'ob/+/rep/+', 'ob/+/rep/victim', 'ob/victim/#', '+/+/cmd/#']) {
      expect(await granted(att, f), f).toBe(128)
    }
    expect(await granted(narrow, 'ob/+/evt/#')).toBe(128)
    expect(await granted(narrow, 'ob/+/evt/+/+/+')).toBe(128)
    // What each may have: presence, its own commands and replies, the events of its role.
    expect(await granted(att, 'ob/+/status')).toBe(1)
    expect(await granted(att, 'ob/+/cmd/att/#')).toBe(1)
    expect(await granted(att, 'ob/+/rep/att')).toBe(1)
    expect(await granted(att, 'ob/+/evt/#')).toBe(1)
    expect(await granted(narrow, 'ob/+/evt/thermo/1/+')).toBe(1)
    expect(att.connected && narrow.connected).toBe(true)
    // The victim calls the peer, the peer replies, the victim emits an event, then announces itself.
    await victim.publishAsync('ob/victim/cmd/peer/echo/1/say', rawFrame(commandSlots({ src: 'victim', service: 'echo', name: 'say', target: 'peer', payload: { text: 'secret' } })), { qos: 1 })
    await peer.publishAsync('ob/peer/rep/victim', rawFrame(replySlots({ src: 'peer', corr: 'X'.repeat(26), replyTo: 'victim', payload: { text: 'secret' } })), { qos: 1 })
    await victim.publishAsync('ob/victim/evt/door/1/opened', rawFrame(eventSlots({ src: 'victim', service: 'door', name: 'opened', payload: {} })), { qos: 1 })
    await victim.publishAsync('ob/victim/evt/thermo/1/reading', rawFrame(eventSlots({ src: 'victim', service: 'thermo', name: 'reading', payload: { celsius: 20 } })), { qos: 1 })
    await victim.publishAsync('ob/victim/status', rawFrame(presenceSlots({ src: 'victim', services: [] })), { qos: 1, retain: true })
    await until(() => seen.some((m) => m.topic === 'ob/victim/status') && seenNarrow.some((m) => m.topic === 'ob/victim/evt/thermo/1/reading'), 30_000)
    // The gateway's own retained presence aside, all it got is the victim's events and presence.
    expect(seen.map((m) => m.topic).filter((t) => !t.startsWith('ob/gateway/')).sort()).toEqual(['ob/victim/evt/door/1/opened', 'ob/victim/evt/thermo/1/reading', 'ob/victim/status'])
    expect(seenNarrow.map((m) => m.topic)).toEqual(['ob/victim/evt/thermo/1/reading'])
    expect(s.gw.auth!.stats().deniedSubscribe).toEqual({ namespace: 5, commands: 3, replies: 2, events: 2 })
    // One line for all of a client's denials in a minute.
    const about = (id: string): Line[] => s.lines.filter((l) => l.client === id && String(l.msg).startsWith('subscription refused'))
    expect(about('att')).toHaveLength(1)
    expect(about('nosy')).toHaveLength(1)
  }, 60_000)

  it('publishes outside the namespace, off the layout, in another sender’s name, retained or empty where they may not be are refused and cut the connection', async () => {
    const s = await setup()
    const secret = s.add('att')
    s.add('victim')
    const reader = await connect(s.url, 'reader', s.add('reader'))
    const got = collect(reader)
    await reader.subscribeAsync(['ob/+/evt/#', 'ob/+/status', 'ob/+/cmd/reader/#', 'ob/+/rep/reader'], { qos: 1 })
    const attempts: { topic: string; payload: Buffer; retain?: boolean; reason: string }[] = [
      // A bound event on another device's topic (it would create a job there).
      { topic: 'ob/victim/evt/thermo/1/due', payload: rawFrame(eventSlots({ src: 'victim', service: 'thermo', name: 'due', payload: { at: 12345 } })), reason: 'namespace' },
      // From its own topic, an envelope claiming another sender.
      { topic: 'ob/att/evt/thermo/1/due', payload: rawFrame(eventSlots({ src: 'victim', service: 'thermo', name: 'due', payload: { at: 12345 } })), reason: 'sender' },
      // A forged reply in the callee's name, on the callee's topic and on its own.
      { topic: 'ob/victim/rep/reader', payload: rawFrame(replySlots({ src: 'victim', corr: 'C'.repeat(26), replyTo: 'reader', payload: { forged: true } })), reason: 'namespace' },
      { topic: 'ob/att/rep/reader', payload: rawFrame(replySlots({ src: 'victim', corr: 'C'.repeat(26), replyTo: 'reader', payload: { forged: true } })), reason: 'sender' },
      // A fake device's presence, on its topic and from its own.
      { topic: 'ob/fake-1/status', payload: rawFrame(presenceSlots({ src: 'fake-1', services: [{ name: 'display', version: '1', commands: ['show'], events: [] }] })), retain: true, reason: 'namespace' },
      { topic: 'ob/att/status', payload: rawFrame(presenceSlots({ src: 'fake-1', services: [] })), retain: true, reason: 'sender' },
      // A retained "offline" for a live device, and an empty retained message that would clear it.
      { topic: 'ob/victim/status', payload: rawFrame(presenceSlots({ src: 'victim', online: false, services: [] })), retain: true, reason: 'namespace' },
      { topic: 'ob/victim/status', payload: Buffer.alloc(0), retain: true, reason: 'namespace' },
      // Off the layout, retained where only the status may be, not an envelope, routed otherwise than its topic.
      { topic: 'ob/att/secret/stash', payload: Buffer.from('x'), reason: 'layout' },
      { topic: 'ob/att/evt/thermo/1', payload: rawFrame(eventSlots({ src: 'att', service: 'thermo', name: 'x', payload: {} })), reason: 'layout' },
      { topic: '$SYS/broker/fake', payload: Buffer.from('x'), reason: 'namespace' },
      { topic: 'elsewhere', payload: Buffer.from('x'), reason: 'namespace' },
      { topic: 'ob/att/evt/thermo/1/reading', payload: rawFrame(eventSlots({ src: 'att', service: 'thermo', name: 'reading', payload: {} })), retain: true, reason: 'retain' },
      { topic: 'ob/att/evt/thermo/1/reading', payload: Buffer.from('not cbor'), reason: 'malformed' },
      { topic: 'ob/att/evt/thermo/1/reading', payload: Buffer.alloc(0), reason: 'malformed' },
      { topic: 'ob/att/evt/thermo/1/reading', payload: rawFrame(eventSlots({ src: 'att', service: 'thermo', name: 'other', payload: {} })), reason: 'layout' },
      { topic: 'ob/att/evt/thermo/1/reading', payload: rawFrame(replySlots({ src: 'att', corr: 'C'.repeat(26), replyTo: 'reader' })), reason: 'layout' },
      { topic: 'ob/att/cmd/reader/echo/1/say', payload: rawFrame(commandSlots({ src: 'att', service: 'echo', name: 'say', target: 'victim', payload: {} })), reason: 'layout' },
    ]
    const expected: Record<string, number> = {}
    for (const a of attempts) {
      const c = await connect(s.url, 'att', secret)
      await publishClosed(c, a.topic, a.payload, { retain: a.retain })
      expected[a.reason] = (expected[a.reason] ?? 0) + 1
      expect(s.gw.auth!.stats().deniedPublish, `${a.topic} (${a.reason})`).toEqual(expected)
    }
    // None of it got past the broker.
    expect(s.routed.filter((t) => !t.startsWith('ob/reader/'))).toEqual([])
    // What the device may publish goes through: its own event, its presence, a clear of its own status.
    const c = await connect(s.url, 'att', secret)
    await c.publishAsync('ob/att/evt/thermo/1/reading', rawFrame(eventSlots({ src: 'att', service: 'thermo', name: 'reading', payload: { celsius: 1 } })), { qos: 1 })
    await c.publishAsync('ob/att/status', rawFrame(presenceSlots({ src: 'att', services: [] })), { qos: 1, retain: true })
    await c.publishAsync('ob/att/cmd/reader/echo/1/say', rawFrame(commandSlots({ src: 'att', service: 'echo', name: 'say', target: 'reader', payload: { text: 'hi' } })), { qos: 1 })
    await c.publishAsync('ob/att/rep/reader', rawFrame(replySlots({ src: 'att', corr: 'C'.repeat(26), replyTo: 'reader' })), { qos: 1 })
    await c.publishAsync('ob/att/status', Buffer.alloc(0), { qos: 1, retain: true })
    const mine = (): typeof got => got.filter((m) => m.topic.startsWith('ob/att/'))
    await until(() => mine().length === 5, 30_000)
    expect(mine().map((m) => m.topic)).toEqual(['ob/att/evt/thermo/1/reading', 'ob/att/status', 'ob/att/cmd/reader/echo/1/say', 'ob/att/rep/reader', 'ob/att/status'])
    expect(mine().every((m) => m.src === 'att' || m.src === undefined)).toBe(true)
    expect(c.connected).toBe(true)
    // One line a minute for the client, however many denials.
    expect(s.lines.filter((l) => l.client === 'att' && String(l.msg).startsWith('publish refused'))).toHaveLength(1)
  }, 90_000)

  it('a live device keeps its retained online status: another device cannot mark it offline, directly or through a will', async () => {
    const s = await setup()
    const victim = await connect(s.url, 'victim', s.add('victim'))
    await victim.publishAsync('ob/victim/status', rawFrame(presenceSlots({ src: 'victim', online: true, services: [] })), { qos: 1, retain: true })
    const attSecret = s.add('att')
    const c = await connect(s.url, 'att', attSecret)
    await publishClosed(c, 'ob/victim/status', rawFrame(presenceSlots({ src: 'victim', online: false, services: [] })), { retain: true })
    // A will on the victim's status, or an "online" will, or a will that is not retained: refused at CONNECT.
    const offline = rawFrame(presenceSlots({ src: 'victim', online: false, services: [] }))
    const wills = [
      { topic: 'ob/victim/status', payload: offline, qos: 1 as const, retain: true },
      { topic: 'ob/att/status', payload: offline, qos: 1 as const, retain: true },
      { topic: 'ob/att/status', payload: rawFrame(presenceSlots({ src: 'att', online: true, services: [] })), qos: 1 as const, retain: true },
      { topic: 'ob/att/status', payload: rawFrame(presenceSlots({ src: 'att', online: false, services: [] })), qos: 1 as const, retain: false },
    ]
    for (const will of wills) expect(await refusal(s.url, { clientId: 'att', username: 'att', password: attSecret, will })).toBe(5)
    expect(s.gw.auth!.stats().refused.will).toBe(4)
    // Its own retained offline status is the one will it may leave; it is published when it drops.
    const own = await mqtt.connectAsync(s.url, { clientId: 'att', username: 'att', password: attSecret, reconnectPeriod: 0, will: { topic: 'ob/att/status', payload: rawFrame(presenceSlots({ src: 'att', online: false, services: [] })), qos: 1, retain: true } })
    own.stream.destroy()
    const fresh = await connect(s.url, 'reader', s.add('reader'))
    const got = collect(fresh)
    await fresh.subscribeAsync('ob/+/status', { qos: 1 })
    await until(() => got.some((m) => m.topic === 'ob/att/status') && got.some((m) => m.topic === 'ob/victim/status'), 30_000)
    expect(got.find((m) => m.topic === 'ob/victim/status')).toMatchObject({ src: 'victim', payload: { online: true }, retained: true })
    expect(got.find((m) => m.topic === 'ob/att/status')).toMatchObject({ src: 'att', payload: { online: false }, retained: true })
    expect(victim.connected).toBe(true)
  }, 60_000)

  it("connecting with a live device's client id without its secret is refused before aedes closes the live one", async () => {
    const s = await setup()
    const secret = s.add('thermo-1')
    const attSecret = s.add('att')
    const live = await connect(s.url, 'thermo-1', secret)
    const got = collect(live)
    await live.subscribeAsync('ob/+/evt/#', { qos: 1 })
    let liveClosed = false
    live.on('close', () => (liveClosed = true))
    const before = connected(s.gw, 'thermo-1')
    // Its id with a wrong secret, with the attacker's own credentials, anonymously, with persistent sessions.
    expect(await refusal(s.url, { clientId: 'thermo-1', username: 'thermo-1', password: 'guess' })).toBe(4)
    expect(await refusal(s.url, { clientId: 'thermo-1', username: 'att', password: attSecret })).toBe(5)
    expect(await refusal(s.url, { clientId: 'thermo-1' })).toBe(5)
    expect(await refusal(s.url, { clientId: 'thermo-1', username: 'thermo-1', password: 'guess', clean: false })).toBe(4)
    // Still the same connection, still served: its own event comes back to it.
    expect(connected(s.gw, 'thermo-1')).toBe(before)
    await live.publishAsync('ob/thermo-1/evt/thermo/1/reading', rawFrame(eventSlots({ src: 'thermo-1', service: 'thermo', name: 'reading', payload: { celsius: 20 } })), { qos: 1 })
    await until(() => got.length === 1, 30_000)
    expect(liveClosed).toBe(false)
    expect(live.connected).toBe(true)
  }, 60_000)

  it('a persistent session comes back through the gatekeeper: its restored subscription delivers the commands queued while it was away', async () => {
    const s = await setup()
    const secret = s.add('dev-p')
    const first = await connect(s.url, 'dev-p', secret, { clean: false })
    expect(await granted(first, 'ob/+/cmd/dev-p/#')).toBe(1)
    expect(await granted(first, 'ob/+/cmd/other/#')).toBe(128)
    await first.endAsync()
    const caller = await connect(s.url, 'caller', s.add('caller'))
    await caller.publishAsync('ob/caller/cmd/dev-p/echo/1/say', rawFrame(commandSlots({ src: 'caller', service: 'echo', name: 'say', target: 'dev-p', payload: { text: 'while away' } })), { qos: 1 })
    const restoredBefore = s.gw.auth!.stats().deniedSubscribe
    // Listening before the CONNACK: the queued command follows it at once.
    const back = mqtt.connect(s.url, { clientId: 'dev-p', username: 'dev-p', password: secret, clean: false, reconnectPeriod: 0 })
    cleanup(() => back.endAsync(true))
    const got = collect(back)
    await until(() => got.length === 1, 30_000)
    expect(got[0]).toMatchObject({ topic: 'ob/caller/cmd/dev-p/echo/1/say', src: 'caller', payload: { text: 'while away' } })
    expect(s.gw.auth!.stats().deniedSubscribe).toEqual(restoredBefore)
  }, 60_000)

  it("a device whose role does not allow one of its own subscriptions does not start: NOT_AUTHORIZED naming the filter, not a start that never ends", async () => {
    const s = await setup()
    const secret = s.add('dev-w', 'narrow')
    const observed: Observed = { executions: 0, slowAborted: 0, events: [] }
    const bridge = createMqttBridge({ url: s.url, deviceId: 'dev-w', username: 'dev-w', password: secret, reconnect: { initialMs: 50, maxMs: 200 }, logger: pino({ level: 'silent' }) })
    const rt = createRuntime({ bridge, services: [watcherService(observed)] })
    cleanup(() => rt.stop({ drainMs: 100 }))
    const err = (await rt.start({ waitForBroker: true }).then(() => undefined, (e: unknown) => e)) as OutpostError | undefined
    expect(err?.code).toBe(ErrorCode.NOT_AUTHORIZED)
    expect(err?.message).toContain('ob/+/evt/counter/1/added')
    expect(err?.message).toContain('role')
    expect(bridge.status.type).not.toBe('connected')
  }, 30_000)

  it('a revoked device is disconnected at once and cannot come back; a rotated secret ends the old one, also when the CLI changes the table', async () => {
    const s = await setup()
    const secret = s.add('thermo-1')
    const live = await connect(s.url, 'thermo-1', secret)
    const closed = new Promise<void>((r) => live.once('close', () => r()))
    expect(s.gw.devices.revoke('thermo-1')).toBe(true)
    await closed
    expect(s.gw.auth!.stats().kicked).toBe(1)
    expect(await refusal(s.url, { clientId: 'thermo-1', username: 'thermo-1', password: secret })).toBe(4)
    // Another connection to gateway.db (as `outpost devices rotate` opens it) rotates a secret.
    const oldSecret = s.add('display-1')
    const display = await connect(s.url, 'display-1', oldSecret)
    const displayClosed = new Promise<void>((r) => display.once('close', () => r()))
    const toolDb = openGatewayDatabase(path.join(s.dataDir, 'gateway.db'), 'tool')
    cleanup(() => toolDb.close())
    const { secret: newSecret } = createDeviceTable(toolDb).rotate('display-1')
    await displayClosed
    expect(s.gw.auth!.stats().kicked).toBe(2)
    expect(await refusal(s.url, { clientId: 'display-1', username: 'display-1', password: oldSecret })).toBe(4)
    const again = await connect(s.url, 'display-1', newSecret)
    expect(again.connected).toBe(true)
    expect(s.gw.auth!.stats().kicked).toBe(2)
  }, 60_000)
})
