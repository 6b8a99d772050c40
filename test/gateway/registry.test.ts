// The fleet registry, fed by a real gateway: device runtimes over MQTT announce themselves, go
// away by last will and by goodbye, and are still known after the gateway restarts on the same
// data folder; a plain MQTT client publishing hostile status frames changes nothing it should not.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Encoder } from 'cbor-x'
import mqtt from 'mqtt'
import { pino } from 'pino'
import * as v from 'valibot'
import { describe, expect, it } from 'vitest'
import { defaultGatewayConfig } from '../../gateway/config/gateway-config.js'
import { startGateway, type Gateway } from '../../gateway/index.js'
import { createRegistry, type DeviceEntry } from '../../gateway/registry/registry.js'
import { GATEWAY_MIGRATIONS, openGatewayDatabase } from '../../gateway/store/gateway-database.js'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createRuntime, defineContract, defineService, ENVELOPE_VERSION, type Envelope, type Runtime } from '../../runtime/index.js'
import { RUNTIME_VERSION } from '../../runtime/messaging/presence.js'
import { openDeviceDatabase } from '../../runtime/stores/sqlite/index.js'
import { createEnvelopeCodec } from '../../runtime/wire/codec.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { freePort, until } from '../helpers/wait.js'

const quiet = pino({ level: 'silent' })
const packageVersion = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version

const sensor = defineContract({
  name: 'sensor',
  version: '2',
  commands: { read: { payload: v.object({}), result: v.object({ celsius: v.number() }) } },
  events: { sample: v.object({ celsius: v.number() }) },
  queues: { calibrate: { payload: v.object({ offset: v.number() }), result: v.object({ ok: v.boolean() }) } },
})
const sensorService = defineService(sensor, {
  commands: { read: () => ({ celsius: 21 }) },
  workers: { calibrate: () => ({ ok: true }) },
  // Hourly: it is declared, not meant to fire during the test.
  schedules: (s) => ({ hourly: s.every(3_600_000, 'sample', () => ({ celsius: 20 })) }),
})

describe('fleet registry', () => {
  const cleanup = cleanupAfterEach()

  const dataDir = (): string => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-registry-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    return dir
  }
  const gateway = async (dir: string, port = 0): Promise<Gateway> => {
    const config = defaultGatewayConfig()
    config.dataDir = dir
    const gw = await startGateway({ config, port, logger: quiet })
    cleanup(() => gw.close())
    return gw
  }
  const device = async (url: string, id: string, instanceId: string, reconnect = { initialMs: 50, maxMs: 300 }): Promise<Runtime> => {
    const runtime = createRuntime({
      bridge: createMqttBridge({ url, deviceId: id, reconnect }),
      services: [sensorService],
      messaging: { instanceId },
      logger: quiet,
    })
    await runtime.start({ waitForBroker: true })
    cleanup(() => runtime.stop({ drainMs: 100 }))
    return runtime
  }
  const entry = (gw: Gateway, id: string): DeviceEntry | undefined => gw.registry.get(id)

  it('shows a device online with what it runs, offline after its last will and after its goodbye, with its services kept', async () => {
    const gw = await gateway(dataDir())
    const before = Date.now()
    // Slow to reconnect: the last will is seen before the device announces itself again.
    const dev = await device(gw.broker.url, 'sensor-1', 'inst-a', { initialMs: 4_000, maxMs: 4_000 })
    await until(() => entry(gw, 'sensor-1')?.online === true, 30_000)
    const online = entry(gw, 'sensor-1')!
    expect(online).toMatchObject({
      device: 'sensor-1',
      online: true,
      instance: 'inst-a',
      runtime: packageVersion,
      services: [{ name: 'sensor', version: '2', commands: ['read'], queues: ['calibrate'], schedules: ['hourly'] }],
    })
    // The queue's result events are the contract's too.
    expect(online.services[0]!.events).toEqual(expect.arrayContaining(['sample', 'calibrate.completed']))
    expect(RUNTIME_VERSION).toBe(packageVersion)
    expect(online.firstSeen).toBeGreaterThanOrEqual(before)
    expect(online.changedAt).toBe(online.firstSeen)
    expect(gw.registry.online()).toBe(1)
    // The gateway's own client is not a device of the fleet.
    expect(gw.registry.get('gateway')).toBeUndefined()
    expect(gw.registry.list().map((d) => d.device)).toEqual(['sensor-1'])

    // The connection dies without a goodbye: the broker publishes the last will.
    const client = (gw.broker.aedes as unknown as { clients: Record<string, { conn: { destroy(): void } }> }).clients['sensor-1']!
    client.conn.destroy()
    await until(() => entry(gw, 'sensor-1')?.online === false, 30_000)
    const willed = entry(gw, 'sensor-1')!
    expect(willed).toMatchObject({ online: false, instance: 'inst-a', runtime: packageVersion, firstSeen: online.firstSeen })
    expect(willed.services).toEqual(online.services)
    expect(willed.changedAt).toBeGreaterThanOrEqual(online.changedAt)
    expect(gw.registry.online()).toBe(0)

    // It reconnects and announces itself again; then it stops cleanly and says goodbye.
    await until(() => entry(gw, 'sensor-1')?.online === true, 30_000)
    await dev.stop({ drainMs: 100 })
    await until(() => entry(gw, 'sensor-1')?.online === false, 30_000)
    expect(entry(gw, 'sensor-1')).toMatchObject({ online: false, firstSeen: online.firstSeen, services: online.services })
    expect(gw.registry.stats().ignored).toEqual({})
  }, 60_000)

  it('survives a gateway restart on the same data folder, and a device that comes back is online again', async () => {
    const dir = dataDir()
    const port = await freePort()
    const first = await gateway(dir, port)
    await device(first.broker.url, 'sensor-2', 'inst-b')
    const stopped = await device(first.broker.url, 'sensor-3', 'inst-c')
    await until(() => first.registry.online() === 2, 30_000)
    await stopped.stop({ drainMs: 100 })
    await until(() => first.registry.online() === 1, 30_000)
    const seen = { two: first.registry.get('sensor-2')!, three: first.registry.get('sensor-3')! }
    await first.close()

    // In the file: what another process (`outpost devices list`) reads while no gateway runs.
    const file = openGatewayDatabase(path.join(dir, 'gateway.db'), 'read')
    const stored = createRegistry(file).list()
    file.close()
    expect(stored.map((d) => d.device)).toEqual(['sensor-2', 'sensor-3'])
    expect(stored[1]).toEqual(seen.three)

    // The running device reconnects on its own to the gateway started again on the same port.
    const second = await gateway(dir, port)
    expect(second.registry.get('sensor-3')).toEqual(seen.three)
    expect(second.registry.get('sensor-2')).toMatchObject({ firstSeen: seen.two.firstSeen, instance: 'inst-b', services: seen.two.services })
    await until(() => second.registry.get('sensor-2')?.online === true, 30_000)
    expect(second.registry.get('sensor-2')!.firstSeen).toBe(seen.two.firstSeen)
    expect(second.registry.online()).toBe(1)
  }, 60_000)

  it('a device is offline during a drill and online again once it has reconnected', async () => {
    const gw = await gateway(dataDir())
    await device(gw.broker.url, 'sensor-4', 'inst-d')
    await until(() => gw.registry.online() === 1, 30_000)
    const drill = gw.interrupt(500)
    await until(() => gw.registry.get('sensor-4')?.online === false, 30_000)
    await drill
    await until(() => gw.registry.get('sensor-4')?.online === true, 30_000)
  }, 60_000)

  it('hostile status frames from a plain MQTT client neither crash the gateway nor change a live device, and are counted', async () => {
    const gw = await gateway(dataDir())
    await device(gw.broker.url, 'victim', 'inst-v')
    await until(() => entry(gw, 'victim')?.online === true, 30_000)
    const victim = entry(gw, 'victim')!

    const codec = createEnvelopeCodec()
    const presence = (src: string, payload: unknown, over: Partial<Envelope> = {}): Buffer =>
      Buffer.from(codec.encode({ v: ENVELOPE_VERSION, kind: 'presence', id: `p-${Math.random()}`, src, inst: 'evil', at: Date.now(), payload, ...over }))
    const cbor = new Encoder({ useRecords: false })
    const many = (n: number, prefix: string): string[] => Array.from({ length: n }, (_, i) => `${prefix}${i}`)
    const attacker = await mqtt.connectAsync(gw.broker.url, { clientId: 'attacker', reconnectPeriod: 0 })
    cleanup(() => attacker.endAsync(true))
    const frames: { topic: string; payload: Buffer; reason?: string }[] = [
      { topic: 'ob/victim/status', payload: Buffer.from('not cbor at all \xff\xfe'), reason: 'malformed' },
      { topic: 'ob/victim/status', payload: Buffer.from(cbor.encode({ online: false })), reason: 'malformed' },
      { topic: 'ob/victim/status', payload: Buffer.alloc(300 * 1024, 0x41), reason: 'malformed' },
      { topic: 'ob/victim/status', payload: Buffer.from(codec.encode({ v: ENVELOPE_VERSION, kind: 'event', id: 'e1', src: 'victim', inst: 'evil', at: 1, service: 's', version: '1', name: 'n' })), reason: 'kind' },
      // Another device's name inside the victim's topic, and the victim's inside another's.
      { topic: 'ob/victim/status', payload: presence('attacker', { online: false, services: [] }), reason: 'sender' },
      { topic: 'ob/attacker/status', payload: presence('victim', { online: false, services: [] }), reason: 'sender' },
      { topic: 'ob/victim/status', payload: presence('victim', { services: [] }), reason: 'payload' },
      { topic: 'ob/victim/status', payload: presence('victim', 'offline'), reason: 'payload' },
      // A last will of a process that is not the live one.
      { topic: 'ob/victim/status', payload: presence('victim', { online: false, services: [] }), reason: 'stale' },
      { topic: 'ob/victim/extra/status', payload: presence('victim', { online: false, services: [] }), reason: 'topic' },
      // Clearing a device nobody has seen: nothing to record.
      { topic: 'ob/nobody/status', payload: Buffer.alloc(0) },
      // A device of its own that declares far more than anyone keeps.
      {
        topic: 'ob/braggart/status',
        payload: presence('braggart', {
          online: true,
          runtime: 'x'.repeat(10_000),
          services: [
            { name: 'big', version: '1', commands: many(1_000, 'c'), events: [7, null, 'e', 'e'], queues: 'q', schedules: [{}] },
            ...many(200, 's').map((name) => ({ name, version: '1', commands: [], events: [] })),
            null,
            { name: '', version: '1' },
          ],
        }, { inst: 'b1' }),
      },
    ]
    for (const f of frames) await attacker.publishAsync(f.topic, f.payload, { qos: 1 })
    const expected: Record<string, number> = {}
    for (const f of frames) if (f.reason !== undefined) expected[f.reason] = (expected[f.reason] ?? 0) + 1
    await until(() => entry(gw, 'braggart') !== undefined && Object.values(gw.registry.stats().ignored).reduce((a, b) => a + b, 0) === frames.length - 2, 30_000)
    expect(gw.registry.stats().ignored).toEqual(expected)

    // The victim is as it announced itself.
    expect(entry(gw, 'victim')).toEqual(victim)
    expect(entry(gw, 'nobody')).toBeUndefined()
    // What a presence declares is kept within bounds.
    const braggart = entry(gw, 'braggart')!
    expect(braggart.online).toBe(true)
    expect(braggart.runtime).toBeUndefined()
    expect(braggart.services).toHaveLength(64)
    expect(braggart.services[0]).toEqual({ name: 'big', version: '1', commands: many(256, 'c'), events: ['e'], queues: [], schedules: [] })

    // The broker still serves, the HTTP-less gateway still answers, and the device is reachable.
    const after = await mqtt.connectAsync(gw.broker.url, { clientId: 'after', reconnectPeriod: 0 })
    await after.endAsync()
    expect(gw.registry.list().map((d) => d.device)).toEqual(['braggart', 'victim'])
  }, 60_000)

  it('keeps at most maxDevices, replacing the one offline the longest, and writes what it holds in one transaction per wait', async () => {
    const database = openDeviceDatabase({ path: ':memory:', migrations: GATEWAY_MIGRATIONS })
    cleanup(() => database.close())
    const registry = createRegistry(database, { maxDevices: 3, flushMs: 10 })
    const codec = createEnvelopeCodec()
    const birth = (device: string, online: boolean): Uint8Array =>
      codec.encode({ v: ENVELOPE_VERSION, kind: 'presence', id: `${device}-${online}`, src: device, inst: `i-${device}`, at: 1, payload: { online, services: [] } })
    registry.observe('ob/a/status', birth('a', true), 1)
    registry.observe('ob/b/status', birth('b', true), 2)
    registry.observe('ob/c/status', birth('c', true), 3)
    // Full, everyone online: a fourth device is not taken.
    registry.observe('ob/d/status', birth('d', true), 4)
    expect(registry.get('d')).toBeUndefined()
    expect(registry.stats().ignored).toEqual({ full: 1 })
    // b goes away first, then a: the next new device takes b's place.
    registry.observe('ob/b/status', birth('b', false), 5)
    registry.observe('ob/a/status', new Uint8Array(0), 6)
    registry.observe('ob/d/status', birth('d', true), 7)
    expect(registry.list().map((e) => [e.device, e.online])).toEqual([['a', false], ['c', true], ['d', true]])
    expect(registry.online()).toBe(2)
    await until(() => (database.db.prepare('SELECT count(*) AS n FROM registry').get() as { n: number }).n === 3, 10_000)
    expect((database.db.prepare('SELECT device FROM registry ORDER BY device').all() as { device: string }[]).map((r) => r.device)).toEqual(['a', 'c', 'd'])
    registry.close()
    // Closed: it takes nothing more.
    registry.observe('ob/e/status', birth('e', true), 8)
    expect(registry.get('e')).toBeUndefined()
  })
})
