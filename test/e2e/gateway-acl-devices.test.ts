// Real devices behind a gateway with authentication on: device runtimes logging in with their
// credentials call each other and hear events without a single denial; the demo devices
// (devices/thermo, devices/display, as their bundles run) work unchanged with the default role;
// a reply forged by a third device never reaches the caller; a revoked device is cut off and
// stays out.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { build } from 'esbuild'
import mqtt, { type MqttClient } from 'mqtt'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { defaultGatewayConfig } from '../../gateway/config/gateway-config.js'
import { startGateway, type Gateway } from '../../gateway/index.js'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createRuntime, type Runtime } from '../../runtime/index.js'
import { counterContract, counterService, watcherService, type Observed } from '../fixtures/services.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { startProcess, type TestProcess } from '../helpers/device-process.js'
import { buildHelperProcess } from '../helpers/processes.js'
import { eventSlots, rawDecoder, rawFrame, replySlots } from '../helpers/raw-wire.js'
import { until } from '../helpers/wait.js'

describe('devices behind a gateway with authentication on', () => {
  const cleanup = cleanupAfterEach()

  const setup = async (): Promise<{ gw: Gateway; dataDir: string }> => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'outpost-acl-devices-'))
    cleanup(() => rmSync(dataDir, { recursive: true, force: true }))
    const config = defaultGatewayConfig()
    config.auth.enabled = true
    // As a gateway started from a config file runs: broker state in broker.db.
    config.persistence = 'sqlite'
    config.dataDir = dataDir
    const gw = await startGateway({ config, port: 0, logger: pino({ level: 'silent' }) })
    cleanup(() => gw.close())
    return { gw, dataDir }
  }

  const device = async (gw: Gateway, id: string, services: Parameters<typeof createRuntime>[0]['services'] = []): Promise<Runtime> => {
    const { secret } = gw.devices.add(id, 'device')
    const runtime = createRuntime({
      bridge: createMqttBridge({ url: gw.broker.url, deviceId: id, username: id, password: secret, reconnect: { initialMs: 50, maxMs: 300 } }),
      services,
      logger: pino({ level: 'silent' }),
    })
    await runtime.start({ waitForBroker: true })
    cleanup(() => runtime.stop({ drainMs: 100 }))
    return runtime
  }

  const attacker = async (gw: Gateway, id: string): Promise<{ secret: string; connect(): Promise<MqttClient> }> => {
    const { secret } = gw.devices.add(id, 'device')
    return {
      secret,
      connect: async () => {
        const c = await mqtt.connectAsync(gw.broker.url, { clientId: id, username: id, password: secret, reconnectPeriod: 0 })
        cleanup(() => c.endAsync(true))
        return c
      },
    }
  }

  const closedAfter = async (c: MqttClient, topic: string, payload: Buffer): Promise<void> => {
    const closed = new Promise<void>((r) => c.once('close', () => r()))
    c.publish(topic, payload, { qos: 1 })
    await closed
  }

  it('two runtimes call each other and hear events with no denial; a forged reply is refused by the broker or dropped by the caller', async () => {
    const { gw } = await setup()
    const seen: Observed = { executions: 0, slowAborted: 0, events: [] }
    await device(gw, 'dev-a', [counterService(seen)])
    const caller = await device(gw, 'caller', [watcherService(seen)])
    await until(() => caller.directory.instances('counter', '1').length === 1, 30_000)
    const counter = caller.client(counterContract)
    expect(await counter.add({ deviceId: 'caller', reading: 1, ts: 1 })).toEqual({ ok: true, n: 1 })
    await until(() => seen.events.length === 1, 30_000)
    expect(seen.events[0]).toEqual({ n: 1, by: 'caller', from: 'dev-a' })
    // Everything the runtimes did (presence, wills, commands, replies, events, their subscriptions) passed.
    expect(gw.auth!.stats()).toMatchObject({ refused: {}, deniedPublish: {}, deniedSubscribe: {} })

    // A slow call; the forger learns its id (here: the test watches the broker, as a forger cannot).
    let commandId: string | undefined
    gw.broker.aedes.on('publish', (packet) => {
      if (packet.topic === 'ob/caller/cmd/dev-a/counter/1/slow') commandId = (rawDecoder.decode(packet.payload as Buffer) as unknown[])[2] as string
    })
    const slow = counter.slow({ ms: 1_500 }, { timeoutMs: 20_000 })
    await until(() => commandId !== undefined, 30_000)
    const forged = (src: string): Buffer => rawFrame(replySlots({ src, corr: commandId!, replyTo: 'caller', payload: { aborted: true } }))
    const att = await attacker(gw, 'forger')
    // In the callee's name, on its topic or on the forger's own: the broker cuts the forger off.
    await closedAfter(await att.connect(), 'ob/dev-a/rep/caller', forged('dev-a'))
    await closedAfter(await att.connect(), 'ob/forger/rep/caller', forged('dev-a'))
    expect(gw.auth!.stats().deniedPublish).toEqual({ namespace: 1, sender: 1 })
    // In its own name: the broker lets it through, the caller drops it (the call went to dev-a).
    const c = await att.connect()
    await c.publishAsync('ob/forger/rep/caller', forged('forger'), { qos: 1 })
    await until(() => (caller.stats().bridge.dropped.LATE_REPLY ?? 0) >= 1, 30_000)
    expect(await slow).toEqual({ aborted: false })
    expect(seen.slowAborted).toBe(0)
  }, 60_000)

  it('a revoked device is cut off within a second or two, announced offline by its will, and kept out', async () => {
    const { gw } = await setup()
    const seen: Observed = { executions: 0, slowAborted: 0, events: [] }
    await device(gw, 'dev-a', [counterService(seen)])
    const caller = await device(gw, 'caller')
    await until(() => caller.directory.instances('counter', '1').length === 1, 30_000)
    gw.devices.revoke('dev-a')
    // Its last will (its retained offline presence, the one will it may leave) tells the caller.
    await until(() => caller.directory.instances('counter', '1').length === 0, 10_000)
    expect(gw.auth!.stats().kicked).toBe(1)
    // It keeps trying to come back and is refused each time.
    await until(() => (gw.auth!.stats().refused.revoked ?? 0) >= 2, 30_000)
    expect((gw.broker.aedes as unknown as { clients: Record<string, unknown> }).clients['dev-a']).toBeUndefined()
    expect(caller.directory.instances('counter', '1')).toHaveLength(0)
  }, 60_000)

  it('the demo devices run unchanged with the default role; a forged due or reading in their name changes nothing', async () => {
    const { gw, dataDir } = await setup()
    const thermoScript = await buildHelperProcess('thermo-device')
    const displayScript = path.resolve('test/e2e/chaos/.build/display-main.mjs')
    await build({ entryPoints: ['devices/display/main.ts'], outfile: displayScript, bundle: true, platform: 'node', format: 'esm', packages: 'external', logLevel: 'silent' })
    const start = (script: string, id: string): TestProcess => {
      const { secret } = gw.devices.add(id, 'device')
      // The ready-made URL `outpost devices add` prints: the credentials ride in it.
      const url = `mqtt://${id}:${secret}@127.0.0.1:${gw.broker.port}`
      const p = startProcess(script, [], { OUTPOST_DEVICE_ID: id, OUTPOST_MQTT_URL: url, OUTPOST_DATA_DIR: dataDir, OUTPOST_SAMPLE_MS: '300', OUTPOST_LOG_FORMAT: 'json' })
      cleanup(() => p.kill('SIGTERM'))
      return p
    }
    const display = start(displayScript, 'display-1')
    const thermo = start(thermoScript, 'thermo-1')
    const results = (): string[] => display.lines.filter((l) => l.includes('heard a sample result'))
    await until(() => results().length >= 2 && display.lines.some((l) => l.includes('heard a reading event')) && display.lines.some((l) => l.includes('display shows')), 60_000)
    await thermo.waitFor('reading shown on display')
    expect(gw.auth!.stats()).toMatchObject({ refused: {}, deniedPublish: {}, deniedSubscribe: {} })

    // Another device publishes a due slot and a reading on the thermo's topics: cut off, routed nowhere.
    const att = await attacker(gw, 'intruder')
    await closedAfter(await att.connect(), 'ob/thermo-1/evt/thermo/1/due', rawFrame(eventSlots({ src: 'thermo-1', service: 'thermo', name: 'due', payload: { at: 12_345 } })))
    await closedAfter(await att.connect(), 'ob/thermo-1/evt/thermo/1/reading', rawFrame(eventSlots({ src: 'thermo-1', service: 'thermo', name: 'reading', payload: { deviceId: 'thermo-1', celsius: 99.5, ts: 12_345 } })))
    expect(gw.auth!.stats().deniedPublish).toEqual({ namespace: 2 })
    // The thermo goes on sampling its own slots; none of them is the forged one.
    const before = results().length
    await until(() => results().length >= before + 3, 60_000)
    expect(results().some((l) => l.includes('"slot":"00:00:12"'))).toBe(false)
    expect(display.lines.some((l) => l.includes('99.5'))).toBe(false)
    expect(thermo.lines.some((l) => /"level":(50|60)/.test(l))).toBe(false)
  }, 120_000)
})
