// Issue 11, "Hostile frames", from outside: a real device process (test/e2e/chaos/fuzz-device.ts)
// and a plain mqtt.js client on the same broker writing CBOR by hand. One test per item of the
// issue, then the defects found beside them.
import mqtt from 'mqtt'
import { describe, expect, it } from 'vitest'
import { freshAedes } from '../helpers/aedes.js'
import { bareAedes } from '../helpers/bare-aedes.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { eventually, residentBytes, startDeviceUnderAttack, startHandWrittenPeer } from '../helpers/device-under-attack.js'
import { until } from '../helpers/wait.js'
import { SHARING, sharedDag } from '../helpers/frame-mutator.js'
import { commandSlots, eventSlots, FIELD, presenceSlots, rawDecoder, rawFrame, replySlots } from '../helpers/raw-wire.js'

const MiB = 1024 * 1024
const DEVICE = 'fuzz-dev'
const SAMPLE = 'ob/attacker/evt/sensor/1/sample' // bound to the queue `work`
const READING = 'ob/attacker/evt/sensor/1/reading' // subscribed
const commandTopic = (name: string): string => `ob/attacker/cmd/${DEVICE}/target/1/${name}`
const sample = (payload: unknown, raw?: Uint8Array): Buffer =>
  rawFrame(eventSlots({ src: 'attacker', service: 'sensor', name: 'sample', payload }), raw === undefined ? {} : { [FIELD.payload]: raw })
const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex')

describe('a device process attacked by a plain client on its broker', () => {
  const cleanup = cleanupAfterEach()

  /** A broker (the gateway's, or a plain aedes without limits), the device under attack, and the attacker's client. */
  const scene = async (o: { bare?: boolean; mode?: string } = {}) => {
    const broker = o.bare === true ? await bareAedes() : await freshAedes()
    cleanup(() => broker.close())
    const device = await startDeviceUnderAttack(broker, { deviceId: DEVICE, mode: o.mode })
    cleanup(() => device.stop())
    const attacker = await mqtt.connectAsync(broker.url, { clientId: 'attacker', reconnectPeriod: 100 })
    cleanup(() => attacker.endAsync(true))
    return { broker, device, attacker }
  }

  it('1. still answers within seconds after an 8-byte cyclic event on a topic bound to a queue', async () => {
    const { device, attacker } = await scene()
    const selfMap = SHARING[1]! // tag 28 {a: tag 29 (0)}: a map that contains itself
    expect(selfMap.length).toBe(8)
    await attacker.publishAsync(SAMPLE, sample(null, selfMap), { qos: 1 })
    await attacker.publishAsync(SAMPLE, sample(null, SHARING[0]), { qos: 1 }) // an array that contains itself
    await attacker.publishAsync(READING, rawFrame(eventSlots({ src: 'attacker', service: 'sensor', name: 'reading', payload: null }), { [FIELD.payload]: selfMap }), { qos: 1 })
    await attacker.publishAsync(commandTopic('put'), rawFrame(commandSlots({ src: 'attacker', service: 'target', name: 'put', target: DEVICE, payload: null }), { [FIELD.payload]: selfMap }), { qos: 1 })

    const r = await device.call('put', { name: 'after', n: 1 }, { timeoutMs: 8_000 })
    expect(r.payload).toEqual({ ok: true, n: 1 })
    // The binding still turns events into jobs.
    await attacker.publishAsync(SAMPLE, sample({ at: 42 }), { qos: 1 })
    await eventually(async () => (await device.probe()).lastSample === 42, 15_000, 'the valid sample after it becoming a job')
    expect(device.connects()).toBe(1)
  }, 60_000)

  it('2. drops commands whose replyTo or src is no valid topic level, stays connected and answers the next', async () => {
    const { device, attacker } = await scene()
    const bad: [replyTo: string | null, src: string][] = [
      ['r'.repeat(70_000), 'attacker'],
      ['#', 'attacker'],
      ['+', 'attacker'],
      ['a/b', 'attacker'],
      ['x\0y', 'attacker'],
      [null, 's'.repeat(70_000)],
      [null, 'a/#'],
    ]
    for (const [replyTo, src] of bad) {
      const slots = commandSlots({ src, service: 'target', name: 'put', target: DEVICE, payload: { name: 'x', n: 1 } })
      slots[FIELD.replyTo] = replyTo
      await attacker.publishAsync(commandTopic('put'), rawFrame(slots), { qos: 1 })
    }
    const r = await device.call('put', { name: 'after', n: 2 }, { timeoutMs: 8_000 })
    expect(r.payload).toEqual({ ok: true, n: 2 })
    // The broker saw the device connect once: it was never cut off for a bad publish, nor went
    // silent until its keepalive expired.
    expect(device.connects()).toBe(1)
  }, 60_000)

  it('3. reads a 64 MiB publish without holding it, at QoS 0 or 1, and answers after it', async () => {
    // A broker with no packet size limit of its own (as Mosquitto or a plain aedes may be run):
    // the device must bound what it reads.
    const { device, attacker } = await scene({ bare: true })
    for (let i = 0; i < 5; i++) await device.call('put', { name: 'warm', n: i })
    const peakBefore = device.peakRssBytes()
    for (const qos of [0, 1] as const) {
      await attacker.publishAsync(commandTopic('put'), Buffer.alloc(64 * MiB, 0x61), { qos })
      // aedes handles one client's packets in order: once this PUBACK is back, the big frame has
      // been handed to the device's connection, and the command below comes after it.
      await attacker.publishAsync(READING, rawFrame(eventSlots({ src: 'attacker', service: 'sensor', name: 'reading', payload: { value: qos } })), { qos: 1 })
      const r = await device.call('put', { name: 'after', n: qos }, { timeoutMs: 60_000 })
      expect(r.payload).toEqual({ ok: true, n: qos })
    }
    expect(device.alive()).toBe(true)
    // The peak, not what is left afterwards: what the allocator hands back to the system after a
    // collection is its own affair (the "never returned"). A frame read whole is at least
    // 64 MiB at once (144 MB measured before the fix). Streaming past it costs the socket's 64 KB
    // read buffers until V8 collects them, which it does after about 32 MB of them (33 to 41 MB
    // measured): less than the frame itself is the line.
    expect((device.peakRssBytes() - peakBefore) / MiB).toBeLessThan(64)
  }, 180_000)

  it("3. the gateway's broker does not forward a 64 MiB publish", async () => {
    const broker = await freshAedes()
    cleanup(() => broker.close())
    const listener = await mqtt.connectAsync(broker.url, { clientId: 'listener' })
    cleanup(() => listener.endAsync(true))
    const got: number[] = []
    listener.on('message', (_t, payload) => got.push(payload.length))
    await listener.subscribeAsync('ob/attacker/evt/#', { qos: 1 })
    const attacker = await mqtt.connectAsync(broker.url, { clientId: 'attacker', reconnectPeriod: 0 })
    cleanup(() => attacker.endAsync(true))
    let closed = false
    attacker.on('close', () => (closed = true))
    attacker.publish('ob/attacker/evt/sensor/1/big', Buffer.alloc(64 * MiB, 0x61), { qos: 0 })
    attacker.publish('ob/attacker/evt/sensor/1/after', Buffer.from('after'), { qos: 0 })
    // Either the broker cut the attacker off, or it forwarded what came after the big one without it.
    await until(() => closed || got.includes(5), 60_000)
    expect(got.filter((n) => n > MiB)).toEqual([])
  }, 90_000)

  it('4. keeps dead letters of 400 invalid events on a bound topic within a few MB', async () => {
    const { device, attacker } = await scene()
    await attacker.publishAsync(SAMPLE, sample({ at: 1 }), { qos: 1 })
    await eventually(async () => (await device.probe()).lastSample === 1, 15_000, 'a first sample becoming a job')
    const baseDb = device.dbBytes()
    const pad = 'p'.repeat(150_000)
    for (let i = 0; i < 400; i++) await attacker.publishAsync(SAMPLE, sample({ at: `not a number ${i}`, pad }), { qos: 1 })
    await attacker.publishAsync(SAMPLE, sample({ at: 4242 }), { qos: 1 })
    await eventually(async () => (await device.probe()).lastSample === 4242, 60_000, 'the valid sample after them becoming a job')
    expect((device.dbBytes() - baseDb) / MiB).toBeLessThanOrEqual(8)
  }, 120_000)

  it('5. answers array payloads to object-schema commands with VALIDATION_FAILED', async () => {
    const { device } = await scene()
    for (const command of ['configure', 'reset', 'put']) {
      for (const payload of [[], ['a', 1], [{ name: 'a', n: 1 }], [[]]]) {
        const r = await device.call(command, payload)
        expect(r.error?.code, `${command} ${JSON.stringify(payload)}`).toBe('VALIDATION_FAILED')
      }
    }
    // Valid payloads still pass.
    expect((await device.call('configure', { label: 'l' })).payload).toEqual({ ok: true })
    expect((await device.call('reset', {})).payload).toEqual({ ok: true })
  }, 60_000)

  it('5. never answers OK to non-plain objects (Map, Set, Date, bytes, typed arrays, Error) for an object schema', async () => {
    const { device } = await scene()
    const shapes: Record<string, Buffer> = {
      'Map (tag 259)': hex('d9 0103 a0'),
      'Set (tag 258)': hex('d9 0102 80'),
      'Date (tag 1)': hex('c1 00'),
      'byte string': hex('40'),
      'Uint8Array (tag 64)': hex('d8 40 40'),
      'Error (tag 27)': hex('d8 1b 82 65 4572726f72 61 78'),
    }
    const sent: [what: string, id: string][] = []
    for (const command of ['configure', 'reset']) {
      for (const [what, raw] of Object.entries(shapes)) sent.push([`${command} with a ${what}`, device.send(command, null, { rawPayload: raw })])
    }
    // Answered in order: once this reply is here, each of those was answered or dropped.
    expect((await device.call('reset', {})).payload).toEqual({ ok: true })
    for (const [what, id] of sent) {
      const r = device.answer(id)
      // Dropped unread (a frame with a tag is refused) or refused by validation; never run.
      if (r !== undefined) expect(r.error?.code, what).toBe('VALIDATION_FAILED')
    }
  }, 60_000)

  it('6. logs a flood of bad frames in a bounded number of lines', async () => {
    const { device, attacker } = await scene()
    const lines = device.lines()
    const expired = commandSlots({ src: 'attacker', service: 'target', name: 'put', target: DEVICE, deadline: Date.now() - 60_000, payload: { name: 'x', n: 1 } })
    const kinds: [string, () => Buffer][] = [
      [commandTopic('put'), () => Buffer.from('not cbor at all')],
      [commandTopic('put'), () => rawFrame([7, 0, 'x'])],
      [commandTopic('put'), () => rawFrame([1, 0, 42])],
      [commandTopic('put'), () => rawFrame(expired)],
      [READING, () => rawFrame(eventSlots({ src: 'attacker', service: 'sensor', name: 'reading', payload: { value: 'x' } }))],
      [SAMPLE, () => sample({ at: 'x' })],
      ['ob/attacker/status', () => rawFrame(presenceSlots({ src: 'attacker', services: [null] }))],
    ]
    for (let i = 0; i < 2_100; i++) {
      const [topic, frame] = kinds[i % kinds.length]!
      attacker.publish(topic, frame(), { qos: i % 2 === 0 ? 0 : 1 })
    }
    // In order behind them: once this sample is a job, every frame before it was handled.
    await attacker.publishAsync(SAMPLE, sample({ at: 77 }), { qos: 1 })
    await eventually(async () => (await device.probe()).lastSample === 77, 60_000, 'the sample after the flood becoming a job')
    expect(device.lines() - lines, device.tail()).toBeLessThanOrEqual(40)
  }, 120_000)

  // ---- found beside the list ----------------------------------------------------

  it('takes a reply only from the device it called, not from another client that knows the command id', async () => {
    const { broker, device } = await scene({ mode: 'ping' })
    // A peer that is announced but never answers; a forger answers every call made to it.
    const services = [{ name: 'peer', version: '1', commands: ['ping'], events: [] }]
    const announcer = await mqtt.connectAsync(broker.url, { clientId: 'peer-dev' })
    cleanup(() => announcer.endAsync(true))
    await announcer.publishAsync('ob/peer-dev/status', rawFrame(presenceSlots({ src: 'peer-dev', services })), { qos: 1, retain: true })
    const forger = await mqtt.connectAsync(broker.url, { clientId: 'forger' })
    cleanup(() => forger.endAsync(true))
    let forged = 0
    forger.on('message', (_t, buf) => {
      const a = rawDecoder.decode(buf) as unknown[]
      // Half with its own name as src, half claiming to be the peer: the topic says who sent it.
      const src = forged++ % 2 === 0 ? 'forger' : 'peer-dev'
      forger.publish(`ob/forger/rep/${DEVICE}`, rawFrame(replySlots({ src, corr: a[2] as string, replyTo: DEVICE, payload: a[16] })), { qos: 0 })
    })
    await forger.subscribeAsync('ob/+/cmd/peer-dev/peer/1/ping', { qos: 1 })
    await eventually(
      async () => {
        const p = await device.probe()
        return forged >= 4 && p.pingsOk + p.pingsFailed >= 4
      },
      30_000,
      'four calls answered by the forger',
    )
    expect((await device.probe()).pingsOk).toBe(0)
  }, 60_000)

  it('takes presence only from the device whose topic it came on: another client cannot declare a live peer gone', async () => {
    const { broker, device, attacker } = await scene({ mode: 'ping' })
    const peer = await startHandWrittenPeer(broker.url)
    cleanup(() => peer.stop())
    await eventually(async () => (await device.probe()).pingsOk >= 3, 20_000, 'the device calling its peer')
    // From its own namespace (all a broker ACL lets it write), the attacker says the peer is offline.
    await attacker.publishAsync('ob/attacker/status', rawFrame(presenceSlots({ src: 'peer-dev', online: false, services: [] })), { qos: 1 })
    // The probe travels behind it to the device: by its answer, the forged presence was handled.
    const before = await device.probe()
    await eventually(async () => (await device.probe()).pingsOk >= before.pingsOk + 5, 20_000, 'five more calls to the peer answered')
    expect((await device.probe()).pingsFailed).toBe(before.pingsFailed)
  }, 60_000)

  it('reads each frame on its own: a malformed frame does not change how the next one is read', async () => {
    // Found by the fuzz test (seed 1730478391): a valid command from another client went unanswered.
    const { device, attacker } = await scene()
    // A whole 18-field envelope, then one byte more: not one CBOR item, so dropped as malformed.
    const slots = commandSlots({ src: 'attacker', service: 'target', name: 'put', target: DEVICE, payload: { name: 'poison', n: 666 } })
    slots.push('not an error map')
    await attacker.publishAsync(commandTopic('put'), Buffer.concat([rawFrame(slots), Buffer.from([0])]), { qos: 1 })
    // The next frame the device reads is a valid command of 17 fields, from another client.
    const r = await device.call('put', { name: 'after', n: 5 }, { timeoutMs: 8_000 })
    expect(r.payload).toEqual({ ok: true, n: 5 })
  }, 60_000)

  it('still answers after an event whose payload shares one value 2^40 times (acyclic value sharing)', async () => {
    const { device, attacker } = await scene()
    // {at: "x", d: <40 levels of [shared, reference to shared]>}: 250 bytes on the wire.
    const dag = sharedDag(40)
    const payload = Buffer.concat([hex('a2 62 6174 61 78 61 64'), dag])
    expect(payload.length).toBeLessThan(300)
    await attacker.publishAsync(SAMPLE, sample(null, payload), { qos: 1 })
    await attacker.publishAsync(commandTopic('put'), rawFrame(commandSlots({ src: 'attacker', service: 'target', name: 'put', target: DEVICE, payload: null }), { [FIELD.payload]: payload }), { qos: 1 })
    const r = await device.call('put', { name: 'after', n: 3 }, { timeoutMs: 8_000 })
    expect(r.payload).toEqual({ ok: true, n: 3 })
    expect(device.connects()).toBe(1)
  }, 60_000)

  it('keeps its memory when presence floods it with devices and services', async () => {
    const { device, attacker } = await scene()
    for (let i = 0; i < 5; i++) await device.call('put', { name: 'warm', n: i })
    const before = await device.probe()
    for (let d = 0; d < 200; d++) {
      const services = Array.from({ length: 2_000 }, (_, s) => ({ name: `svc-${d}-${s}`, version: '1', commands: ['a', 'b', 'c'], events: [] }))
      await attacker.publishAsync(`ob/ghost-${d}/status`, rawFrame(presenceSlots({ src: `ghost-${d}`, services })), { qos: 1 })
    }
    const r = await device.call('put', { name: 'after', n: 4 }, { timeoutMs: 30_000 })
    expect(r.payload).toEqual({ ok: true, n: 4 })
    const after = await device.probe()
    expect((residentBytes(after) - residentBytes(before)) / MiB).toBeLessThanOrEqual(16)
  }, 120_000)
})

