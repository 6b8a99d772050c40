// Clearing a retained presence the usual MQTT way (an empty retained message on
// `<prefix>/<device>/status`) says that device is gone (issue 11): any client can leave a
// presence declaring a service, and thermo would send every call there until it is cleared.
// Real aedes, real MQTT bridges and runtimes, a plain mqtt.js client for the raw frames.
import mqtt from 'mqtt'
import { describe, expect, it } from 'vitest'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createMessenger, createRuntime, ENVELOPE_VERSION, type Runtime } from '../../runtime/index.js'
import { createEnvelopeCodec } from '../../runtime/wire/codec.js'
import { echoContract, echoService } from '../fixtures/services.js'
import { freshAedes } from '../helpers/aedes.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { until } from '../helpers/wait.js'

describe('a cleared retained presence', () => {
  const cleanup = cleanupAfterEach()

  const setUp = async () => {
    const broker = await freshAedes()
    cleanup(() => broker.close())
    const started = async (id: string, withEcho: boolean): Promise<Runtime> => {
      const rt = createRuntime({ bridge: createMqttBridge({ url: broker.url, deviceId: id }), services: withEcho ? [echoService()] : [], discoveryWaitMs: 2_000 })
      await rt.start({ waitForBroker: true })
      cleanup(() => rt.stop({ drainMs: 50 }))
      return rt
    }
    const raw = await mqtt.connectAsync(broker.url, { clientId: 'raw-client', reconnectPeriod: 0 })
    cleanup(() => raw.endAsync())
    return { broker, started, raw }
  }

  it('marks the device gone: calls go to the live instances only, and the service stays known', async () => {
    const { started, raw } = await setUp()
    const display = await started('display-1', true)
    const thermo = await started('thermo', false)
    // Anyone on the broker may leave a presence declaring echo@1 (ACLs are the gateway's).
    const fake = createEnvelopeCodec().encode({
      v: ENVELOPE_VERSION, kind: 'presence', id: 'fake-birth', src: 'fake', inst: 'f1', at: Date.now(),
      payload: { online: true, services: [{ name: 'echo', version: '1', commands: ['say'], events: [] }] },
    })
    await raw.publishAsync('ob/fake/status', Buffer.from(fake), { qos: 1, retain: true })
    await until(() => thermo.directory.deviceState('fake') === 'live' && thermo.directory.instances('echo', '1').length === 2, 10_000)

    await raw.publishAsync('ob/fake/status', Buffer.alloc(0), { qos: 1, retain: true })
    await until(() => thermo.directory.deviceState('fake') === 'gone', 10_000)
    expect(thermo.directory.instances('echo', '1').map((i) => i.device)).toEqual(['display-1'])
    expect(thermo.directory.knows('echo', '1')).toBe(true)
    const echo = thermo.client(echoContract)
    for (let i = 0; i < 4; i++) expect(await echo.say({ text: `t${i}` }, { timeoutMs: 5_000 })).toEqual({ text: `t${i}`, device: 'display-1' })
    // The empty frame was taken as presence, not counted as a malformed frame.
    expect(thermo.stats().bridge.dropped.MALFORMED_FRAME ?? 0).toBe(0)
    expect(display.directory.deviceState('fake')).not.toBe('live')
  }, 30_000)

  it('of a device that is alive is announced again by that device', async () => {
    const { started, raw } = await setUp()
    await started('display-1', true)
    const thermo = await started('thermo', false)
    await until(() => thermo.directory.deviceState('display-1') === 'live', 10_000)
    // Someone clears the presence of a live device: it says again that it is here.
    await raw.publishAsync('ob/display-1/status', Buffer.alloc(0), { qos: 1, retain: true })
    // A runtime that starts afterwards learns it from the retained presence.
    const late = await started('late', false)
    await until(() => late.directory.deviceState('display-1') === 'live', 10_000)
    expect(await late.client(echoContract).say({ text: 'hi' }, { timeoutMs: 5_000 })).toEqual({ text: 'hi', device: 'display-1' })
    await until(() => thermo.directory.deviceState('display-1') === 'live', 10_000)
  }, 30_000)

  it('is an empty frame only on a presence topic: on any other topic it is still a malformed frame', async () => {
    const { broker, raw } = await setUp()
    const bridge = createMessenger({ bridge: createMqttBridge({ url: broker.url, deviceId: 'listener' }) })
    cleanup(() => bridge.close({ drainMs: 50 }))
    const heard: string[] = []
    await bridge.subscribe('ob/+/evt/+/+/+', (m) => void heard.push(m.topic))
    await bridge.connect()
    await raw.publishAsync('ob/fake/evt/echo/1/said', Buffer.alloc(0), { qos: 1 })
    await until(() => (bridge.stats().dropped.MALFORMED_FRAME ?? 0) === 1, 10_000)
    expect(heard).toEqual([])
  }, 30_000)
})
