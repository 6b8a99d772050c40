// A running device over MQTT, attacked with raw bytes from a plain mqtt.js client (not Outpost code).
import { Decoder, Encoder } from 'cbor-x'
import mqtt from 'mqtt'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createRuntime, type Runtime } from '../../runtime/index.js'
import type { MqttBroker } from '../../gateway/broker/mqtt-broker.js'
import { counterService } from '../fixtures/services.js'
import { freshAedes } from '../helpers/aedes.js'
import { until } from '../helpers/wait.js'

// Envelope v1 as documented in runtime/wire/README.md, written by hand here on purpose.
const enc = new Encoder({ useRecords: false })
const dec = new Decoder({ useRecords: false, mapsAsObjects: true })
const CMD_TOPIC = 'ob/raw/cmd/dev-a/counter/1/add'
let seq = 0
const command = (payload: unknown, version = 1): Buffer =>
  enc.encode([version, 0, `RAWCOMMAND${String(++seq).padStart(16, '0')}`, 'raw', 'r1', Date.now(), 'counter', '1', 'add', null, 'raw', 'dev-a', Date.now() + 5_000, null, null, null, payload])

describe('a device fed bad input over MQTT', () => {
  let broker: MqttBroker
  let device: Runtime
  let raw: mqtt.MqttClient
  const replies: unknown[][] = []

  beforeAll(async () => {
    broker = await freshAedes()
    device = createRuntime({ bridge: createMqttBridge({ url: broker.url, deviceId: 'dev-a', maxPayloadBytes: 64 * 1024 }), services: [counterService({ executions: 0, slowAborted: 0, events: [] })] })
    await device.start({ waitForBroker: true })
    raw = await mqtt.connectAsync(broker.url, { clientId: 'raw-client' })
    await raw.subscribeAsync('ob/+/rep/raw', { qos: 1 })
    raw.on('message', (_topic, payload) => replies.push(dec.decode(payload) as unknown[]))
  })
  afterAll(async () => {
    await raw.endAsync()
    await device.stop({ drainMs: 200 })
    await broker.close()
  })

  const send = (bytes: Buffer): Promise<unknown> => raw.publishAsync(CMD_TOPIC, bytes, { qos: 1 })
  const dropped = (code: string): number => device.stats().bridge.dropped[code] ?? 0
  const soon = (check: () => boolean): Promise<void> => until(check, 3_000)

  it('drops raw garbage, counts it and keeps serving', async () => {
    await send(Buffer.from('definitely not cbor \xff\xfe'))
    await send(Buffer.from([0xff, 0xff, 0xff]))
    await soon(() => dropped('MALFORMED_FRAME') === 2)
  })

  it('drops truncated CBOR as malformed', async () => {
    const full = command({ deviceId: 'x', reading: 1, ts: 1 })
    await send(full.subarray(0, full.length - 5))
    await soon(() => dropped('MALFORMED_FRAME') === 3)
  })

  it('drops an oversized frame without decoding it', async () => {
    await send(command({ deviceId: 'x'.repeat(100_000), reading: 1, ts: 1 }))
    await soon(() => dropped('FRAME_TOO_LARGE') === 1)
  })

  it('drops an envelope of an unknown version and one of the wrong shape', async () => {
    await send(command({ deviceId: 'x', reading: 1, ts: 1 }, 7))
    await send(enc.encode({ hello: 'world' }))
    await soon(() => dropped('UNSUPPORTED_VERSION') === 1 && dropped('INVALID_ENVELOPE') === 1)
  })

  it('answers a schema-violating payload with VALIDATION_FAILED naming the paths, not the values', async () => {
    const before = replies.length
    await send(command({ deviceId: 42, reading: 'secret-reading', ts: 1 }))
    await soon(() => replies.length === before + 1)
    const reply = replies.at(-1)!
    expect(reply[1]).toBe(1) // kind: reply
    const error = reply[17] as { code: string; details: { issues: { path: string; received: string }[] } }
    expect(error.code).toBe('VALIDATION_FAILED')
    expect(error.details.issues.map((i) => i.path).sort()).toEqual(['deviceId', 'reading'])
    expect(JSON.stringify(error)).not.toContain('secret-reading')
  })

  it('answers NO_HANDLER to commands named after what every object inherits', async () => {
    const names = ['constructor', '__proto__', 'toString', 'valueOf', 'hasOwnProperty', '__defineGetter__', 'isPrototypeOf']
    const before = replies.length
    for (const name of names) {
      const frame = enc.encode([1, 0, `RAWCOMMAND${String(++seq).padStart(16, '0')}`, 'raw', 'r1', Date.now(), 'counter', '1', name, null, 'raw', 'dev-a', Date.now() + 5_000, null, null, null, { deviceId: 'x', reading: 1, ts: 1 }])
      await raw.publishAsync(`ob/raw/cmd/dev-a/counter/1/${name}`, frame, { qos: 1 })
    }
    await soon(() => replies.length === before + names.length)
    const codes = replies.slice(before).map((r) => (r[17] as { code: string }).code)
    expect(codes).toEqual(names.map(() => 'NO_HANDLER'))
  })

  it('still answers a good command after all of that', async () => {
    const before = replies.length
    await send(command({ deviceId: 'ok', reading: 1, ts: 1 }))
    await soon(() => replies.length === before + 1)
    const reply = replies.at(-1)!
    expect(reply[16]).toEqual({ ok: true, n: 1 })
    expect(reply[17] ?? null).toBeNull()
  })
})

describe('a device whose handlers fail under a flood of calls', () => {
  it('logs a command handler that fails on every call a bounded number of times, with the count in stats', async () => {
    const broker = await freshAedes()
    const lines: { msg: string; count?: number }[] = []
    const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as { msg: string; count?: number }) })
    const device = createRuntime({ bridge: createMqttBridge({ url: broker.url, deviceId: 'dev-b' }), services: [counterService({ executions: 0, slowAborted: 0, events: [] })], logger })
    await device.start({ waitForBroker: true })
    const raw = await mqtt.connectAsync(broker.url, { clientId: 'raw-flood' })
    const answers: unknown[] = []
    await raw.subscribeAsync('ob/+/rep/raw', { qos: 1 })
    raw.on('message', (_t, payload) => answers.push(dec.decode(payload)))
    try {
      const calls = 300
      for (let i = 0; i < calls; i++) {
        const frame = enc.encode([1, 0, `FLOODCOMMAND${String(i).padStart(14, '0')}`, 'raw', 'r1', Date.now(), 'counter', '1', 'crash', null, 'raw', 'dev-b', Date.now() + 5_000, null, null, null, {}])
        await raw.publishAsync('ob/raw/cmd/dev-b/counter/1/crash', frame, { qos: 0 })
      }
      await until(() => answers.length === calls, 10_000)
      const failed = lines.filter((l) => l.msg.startsWith('command handler failed'))
      expect(failed.length).toBeGreaterThanOrEqual(1)
      expect(failed.length).toBeLessThanOrEqual(2)
      expect(device.stats().rejections['handler-failed:counter.crash']).toBe(calls)
    } finally {
      await raw.endAsync()
      await device.stop({ drainMs: 200 })
      await broker.close()
    }
  })
})

describe('a device logging what it drops', () => {
  it('names a hostile envelope version in a line of bounded length (the version a string of 100,000 characters)', async () => {
    const broker = await freshAedes()
    const lines: string[] = []
    const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(s) })
    const device = createRuntime({ bridge: createMqttBridge({ url: broker.url, deviceId: 'dev-a' }), services: [counterService({ executions: 0, slowAborted: 0, events: [] })], logger })
    await device.start({ waitForBroker: true })
    const raw = await mqtt.connectAsync(broker.url, { clientId: 'raw-version' })
    try {
      await raw.publishAsync(CMD_TOPIC, command({ deviceId: 'x', reading: 1, ts: 1 }, 'v'.repeat(100_000) as unknown as number), { qos: 1 })
      await until(() => (device.stats().bridge.dropped.UNSUPPORTED_VERSION ?? 0) === 1, 3_000)
      const said = lines.filter((l) => l.includes('UNSUPPORTED_VERSION'))
      expect(said.length).toBe(1)
      // Before: the whole string went into the message, a 100 KB line.
      expect(said[0]!.length).toBeLessThan(1_000)
      expect(said[0]).toMatch(/v{32}…/)
      // And the device still serves.
      const answers: unknown[][] = []
      await raw.subscribeAsync('ob/+/rep/raw', { qos: 1 })
      raw.on('message', (_t, payload) => answers.push(dec.decode(payload) as unknown[]))
      await raw.publishAsync(CMD_TOPIC, command({ deviceId: 'ok', reading: 1, ts: 1 }), { qos: 1 })
      await until(() => answers.length === 1, 3_000)
      expect(answers[0]![16]).toEqual({ ok: true, n: 1 })
    } finally {
      await raw.endAsync()
      await device.stop({ drainMs: 200 })
      await broker.close()
    }
  })
})
