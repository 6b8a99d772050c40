// An attacker floods a real gateway process (`outpost gateway --config`, authentication off, so
// one plain MQTT.js client may pose as any device) with contract documents on
// ob/<device>/contract for thousands of device ids that never announce a presence: documents that
// look right, garbage, empty frames, documents just under the registry's 256 KiB limit and bodies
// just under the broker's 1 MiB packet limit, retained and not. Each such document waits for a
// presence that never comes (at most 64 at once, 10 s each) and is then counted as `unknown`.
// The gateway must stay up and small, count the flood as ignored, not log a line per frame, and
// keep recording the documents of devices that do announce themselves, during the flood and after.
// Found so: a document that replaced a waiting one of the same id was counted nowhere, so a flood
// on a few ids showed as a few frames in /metrics; it is counted as `unknown` now.
import { randomBytes } from 'node:crypto'
import mqtt, { type MqttClient } from 'mqtt'
import { describe, expect, it } from 'vitest'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { presenceSlots, rawFrame, rawId } from '../helpers/raw-wire.js'
import { until } from '../helpers/wait.js'
import { startGatewayProcess, type GatewayProcess } from './gateway-attack-process.js'

const DOCUMENT = { v: 1, dialect: 'draft-07', services: [{ name: 'probe', version: '1', commands: { set: { payload: { type: 'object' } } }, events: {} }] }
const PROBE = [{ name: 'probe', version: '1', commands: ['set'], events: [] }]

/** A contract envelope (kind 4 on the wire), written by hand. */
const contractFrame = (src: string, document: unknown, kind = 4): Buffer =>
  rawFrame([1, kind, rawId(), src, 'raw-inst', Date.now(), null, null, null, null, null, null, null, null, null, null, document])

/** A contract envelope of `bytes` bytes or a little more (a schema padded with a long description). */
function bigContract(src: string, bytes: number): Buffer {
  const pad = 'p'.repeat(bytes - contractFrame(src, DOCUMENT).length - 16)
  const doc = { v: 1, dialect: 'draft-07', services: [{ name: 'probe', version: '1', commands: { set: { payload: { type: 'object', description: pad } } }, events: {} }] }
  return contractFrame(src, doc)
}

function valueOf(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

interface Frame {
  topic: string
  payload: Buffer
  qos: 0 | 1
  retain: boolean
}

/** The flood: every frame names a device of its own; `expected` is what the registry should count of it. */
function flood(): { frames: Frame[]; expected: { unknown: number; tooLarge: number; badTopic: number } } {
  const frames: Frame[] = []
  let unknown = 0
  let tooLarge = 0
  let badTopic = 0
  // Documents that look right (some of another sender, some of another kind), retained one in three.
  for (let i = 0; i < 3_000; i++) {
    const device = `ghost-a-${i}`
    const payload = i % 5 === 1 ? contractFrame('someone-else', DOCUMENT) : i % 5 === 2 ? contractFrame(device, { online: true, services: [] }, 3) : contractFrame(device, DOCUMENT)
    frames.push({ topic: `ob/${device}/contract`, payload, qos: i % 2 === 0 ? 1 : 0, retain: i % 3 === 0 })
    unknown++
  }
  // Garbage, up to 2 kB, retained one in two.
  for (let i = 0; i < 1_000; i++) {
    frames.push({ topic: `ob/ghost-b-${i}/contract`, payload: randomBytes(1 + ((i * 37) % 2_000)), qos: i % 2 === 0 ? 1 : 0, retain: i % 2 === 1 })
    unknown++
  }
  // Empty retained frames (a clear) of devices nobody knows, and ids of odd characters, long ones too.
  for (let i = 0; i < 500; i++) {
    frames.push({ topic: `ob/ghost-c-${i}/contract`, payload: Buffer.alloc(0), qos: 1, retain: true })
    unknown++
  }
  for (let i = 0; i < 200; i++) {
    const device = i % 2 === 0 ? `gh\u00f6st-\u2603-${i}` : `${'L'.repeat(120)}-${i}`
    frames.push({ topic: `ob/${device}/contract`, payload: contractFrame(device, DOCUMENT), qos: 1, retain: i % 4 === 0 })
    unknown++
  }
  // The same few ids again and again: each frame is one more document not kept.
  for (let i = 0; i < 1_000; i++) {
    const device = i % 2 === 0 ? 'ghost-same' : `ghost-few-${i % 5}`
    frames.push({ topic: `ob/${device}/contract`, payload: i % 3 === 0 ? randomBytes(64) : contractFrame(device, DOCUMENT), qos: i % 2 === 0 ? 1 : 0, retain: i % 4 === 0 })
    unknown++
  }
  // Ids that cannot be one topic level of the layout (over 128 characters): not a contract topic.
  for (let i = 0; i < 50; i++) {
    frames.push({ topic: `ob/${'X'.repeat(200)}-${i}/contract`, payload: contractFrame('x', DOCUMENT), qos: 1, retain: false })
    badTopic++
  }
  // Documents just under the registry's limit (256 KiB): each waits for its presence, 64 at most.
  for (let i = 0; i < 150; i++) {
    const device = `ghost-d-${i}`
    frames.push({ topic: `ob/${device}/contract`, payload: bigContract(device, 256 * 1024 - 200), qos: 1, retain: i < 10 })
    unknown++
  }
  // Bodies just under the broker's packet limit (1 MiB): too large for the registry.
  for (let i = 0; i < 20; i++) {
    const device = `ghost-e-${i}`
    frames.push({ topic: `ob/${device}/contract`, payload: i % 2 === 0 ? bigContract(device, 1024 * 1024 - 4096) : randomBytes(1024 * 1024 - 4096), qos: 1, retain: i < 4 })
    tooLarge++
  }
  // Mixed, so large, small, retained and garbage frames interleave.
  for (let i = frames.length - 1; i > 0; i--) {
    const j = (i * 7919 + 13) % (i + 1)
    ;[frames[i], frames[j]] = [frames[j]!, frames[i]!]
  }
  return { frames, expected: { unknown, tooLarge, badTopic } }
}

describe('gateway under attack: contract documents of thousands of devices that never announce themselves', () => {
  const cleanup = cleanupAfterEach()
  let gw: GatewayProcess | undefined

  const connect = (clientId: string): Promise<MqttClient> =>
    new Promise((resolve, reject) => {
      const c = mqtt.connect(gw!.mqttUrl, { clientId, reconnectPeriod: 0, connectTimeout: 20_000 })
      cleanup(() => c.end(true))
      c.once('connect', () => resolve(c))
      c.once('error', reject)
    })
  const metrics = async (): Promise<string> => (await gw!.get('/metrics')).text()
  /** A device as the runtime announces itself: its presence, then its document, both retained. */
  async function announce(device: string): Promise<void> {
    const c = await connect(device)
    await c.publishAsync(`ob/${device}/status`, rawFrame(presenceSlots({ src: device, services: PROBE })), { qos: 1, retain: true })
    await c.publishAsync(`ob/${device}/contract`, contractFrame(device, DOCUMENT), { qos: 1, retain: true })
    let status = 0
    for (const end = Date.now() + 45_000; status !== 200 && Date.now() < end; await new Promise((r) => setTimeout(r, 100))) {
      status = (await gw!.get(`/devices/${encodeURIComponent(device)}/contract`)).status
    }
    expect(status, `${device}'s document recorded`).toBe(200)
    const got = (await (await gw!.get(`/devices/${encodeURIComponent(device)}/contract`)).json()) as { device: string; current: boolean; document: unknown }
    expect(got).toMatchObject({ device, current: true, document: DOCUMENT })
  }

  it('the gateway stays up and small, counts the flood as unknown or too large, logs a few lines, and keeps recording real devices\' documents', async () => {
    gw = await startGatewayProcess({ extra: 'auth: { enabled: false }\n' })
    cleanup(() => gw?.stop())
    // A device before the flood, so what the first document costs is in the baseline.
    await announce('legit-0')
    const rssBefore = gw.rssBytes()
    const linesBefore = gw.lines.length
    let rssPeak = rssBefore
    const sampler = setInterval(() => {
      if (gw?.alive() === true) rssPeak = Math.max(rssPeak, gw.rssBytes())
    }, 200)

    const { frames, expected } = flood()
    expect(frames.length).toBeGreaterThan(4_000)
    const attacker = await connect('attacker')
    let sent = 0
    const sending = (async () => {
      for (let i = 0; i < frames.length; i += 100) {
        await Promise.all(frames.slice(i, i + 100).map((f) => attacker.publishAsync(f.topic, f.payload, { qos: f.qos, retain: f.retain })))
        sent = i + 100
      }
    })()
    try {
      // A real device announces itself in the middle of the flood…
      await until(() => sent >= frames.length / 2, 90_000)
      await announce('legit-1')
      await sending
      // …and another after it.
      await announce('legit-2')

      // Every flood frame is counted as ignored once its wait for a presence is over; none is recorded.
      const totalIgnored = expected.unknown + expected.tooLarge
      let text = await metrics()
      const ignored = (t: string): number => (valueOf(t, 'outpost_gateway_contracts_ignored_total{reason="unknown"}') ?? 0) + (valueOf(t, 'outpost_gateway_contracts_ignored_total{reason="too-large"}') ?? 0)
      for (const end = Date.now() + 60_000; ignored(text) < totalIgnored && Date.now() < end; text = await metrics()) await new Promise((r) => setTimeout(r, 250))
      expect(valueOf(text, 'outpost_gateway_contracts_ignored_total{reason="unknown"}')).toBe(expected.unknown)
      expect(valueOf(text, 'outpost_gateway_contracts_ignored_total{reason="too-large"}')).toBe(expected.tooLarge)
      expect(valueOf(text, 'outpost_gateway_presence_ignored_total{reason="topic"}')).toBe(expected.badTopic)
      expect(valueOf(text, 'outpost_gateway_contracts_recorded_total')).toBe(3)
      expect(valueOf(text, 'outpost_gateway_devices_known')).toBe(3)
      const list = (await (await gw.get('/devices')).json()) as { devices: { device: string }[] }
      expect(list.devices.map((d) => d.device)).toEqual(['legit-0', 'legit-1', 'legit-2'])
      expect((await gw.get('/devices/ghost-a-0/contract')).status).toBe(404)

      // Still serving, and the flooding client was never cut off.
      expect(gw.alive()).toBe(true)
      expect((await gw.get('/readyz')).status).toBe(200)
      expect(attacker.connected).toBe(true)
      await announce('legit-3')

      // Memory: about 60 MB went through, and the broker keeps the retained frames (a few MB):
      // nothing near one retained copy per frame in the registry.
      clearInterval(sampler)
      const rssAfter = gw.rssBytes()
      expect(rssPeak - rssBefore, `peak ${rssPeak} before ${rssBefore}`).toBeLessThan(150 * 2 ** 20)
      expect(rssAfter - rssBefore, `after ${rssAfter} before ${rssBefore}`).toBeLessThan(150 * 2 ** 20)

      // A line a minute per reason, and a few for the devices that connected, not one per frame.
      const newLines = gw.lines.slice(linesBefore).filter((l) => l.trim() !== '')
      expect(newLines.length, newLines.slice(0, 40).join('\n')).toBeLessThan(25)
    } finally {
      clearInterval(sampler)
      await sending.catch(() => {})
    }
  }, 110_000)
})
