// A device's configuration from OUTPOST_* variables: credentials come from the URL unless a
// variable sets them, and a variable set to nothing (`FOO= cmd` in a shell) counts as not set.
// When a device says it is ready: at once on its own, after its first connection attempt under the launcher.
import { pino, type Logger } from 'pino'
import { describe, expect, it } from 'vitest'
import { readDeviceConfig, reportReady } from '../../devices/device-config.js'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { freshAedes } from '../helpers/aedes.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { freePort } from '../helpers/wait.js'

describe('readDeviceConfig', () => {
  const url = 'mqtt://thermo-1:s3cr%2Ft@127.0.0.1:1884'

  it('takes the user name and password from the URL', () => {
    const c = readDeviceConfig('thermo-1', { OUTPOST_MQTT_URL: url })
    expect(c).toMatchObject({ username: 'thermo-1', password: 's3cr/t', mqttUrl: url, logLevel: 'info' })
  })

  it('an empty OUTPOST_MQTT_USERNAME, OUTPOST_MQTT_PASSWORD or OUTPOST_LOG_LEVEL counts as not set', () => {
    const c = readDeviceConfig('thermo-1', { OUTPOST_MQTT_URL: url, OUTPOST_MQTT_USERNAME: '', OUTPOST_MQTT_PASSWORD: '', OUTPOST_LOG_LEVEL: '', OUTPOST_LOG_FORMAT: '' })
    expect(c).toMatchObject({ username: 'thermo-1', password: 's3cr/t', logLevel: 'info' })
    expect(c.logFormat).toBeUndefined()
  })

  it('a variable that is set wins over the URL', () => {
    const c = readDeviceConfig('thermo-1', { OUTPOST_MQTT_URL: url, OUTPOST_MQTT_USERNAME: 'other', OUTPOST_MQTT_PASSWORD: 'pw' })
    expect(c).toMatchObject({ username: 'other', password: 'pw' })
  })
})

describe('reportReady', () => {
  const cleanup = cleanupAfterEach()
  const capture = (): { log: Logger; lines: Record<string, unknown>[] } => {
    const lines: Record<string, unknown>[] = []
    return { lines, log: pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) }) }
  }
  const LAUNCHED = { OUTPOST_DEVICE_DIR: '/device' }

  it('run on its own: says ready at once, before the broker connection is made, and sends nothing over IPC', async () => {
    const broker = await freshAedes()
    cleanup(() => broker.close())
    const bridge = createMqttBridge({ url: broker.url, deviceId: 'ready-1' })
    cleanup(() => bridge.close({ drainMs: 0 }))
    const { log, lines } = capture()
    const sent: string[] = []
    await reportReady(log, bridge, { url: broker.url }, {}, (m) => sent.push(m))
    expect(lines).toEqual([expect.objectContaining({ msg: 'ready', url: broker.url, broker: 'connecting' })])
    expect(sent).toEqual([])
  })

  it('started by the launcher: waits for the first connection, then says ready in its line and over IPC', async () => {
    const broker = await freshAedes()
    cleanup(() => broker.close())
    const bridge = createMqttBridge({ url: broker.url, deviceId: 'ready-2' })
    cleanup(() => bridge.close({ drainMs: 0 }))
    const { log, lines } = capture()
    const sent: string[] = []
    const reported = reportReady(log, bridge, {}, LAUNCHED, (m) => sent.push(m))
    await new Promise((r) => setTimeout(r, 50))
    expect(lines).toEqual([]) // not connecting yet: not ready for the launcher
    await bridge.connect()
    await reported
    expect(lines).toEqual([expect.objectContaining({ msg: 'ready', broker: 'connected' })])
    expect(sent).toEqual(['outpost:ready'])
  })

  it('started by the launcher with no broker to reach: still ready once the first attempt failed (it runs offline)', async () => {
    const url = `mqtt://127.0.0.1:${await freePort()}`
    const bridge = createMqttBridge({ url, deviceId: 'ready-3', reconnect: { initialMs: 60_000, maxMs: 60_000 } })
    cleanup(() => bridge.close({ drainMs: 0 }))
    const { log, lines } = capture()
    const sent: string[] = []
    const reported = reportReady(log, bridge, {}, LAUNCHED, (m) => sent.push(m))
    await bridge.connect().catch(() => {})
    await reported
    expect(lines).toEqual([expect.objectContaining({ msg: 'ready', broker: 'offline' })])
    expect(sent).toEqual(['outpost:ready'])
  })

  it('started by the launcher and stopped before its first connection: not ready', async () => {
    const broker = await freshAedes()
    cleanup(() => broker.close())
    const bridge = createMqttBridge({ url: broker.url, deviceId: 'ready-4' })
    const { log, lines } = capture()
    const sent: string[] = []
    const reported = reportReady(log, bridge, {}, LAUNCHED, (m) => sent.push(m))
    await bridge.close({ drainMs: 0 })
    await reported
    expect(lines).toEqual([])
    expect(sent).toEqual([])
  })
})
