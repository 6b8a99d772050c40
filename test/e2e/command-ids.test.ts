// A command delivered twice runs once, but only when it is the same sender's command. Found from
// outside: a device's inbox knew message ids alone, and ids are predictable from the events a
// device publishes (time, a part fixed per process, a counter), so a plain client that sent
// commands under a caller's next ids first had them run, and the caller's own were answered with
// the stored reply, sent to that client. Here a plain mqtt.js client takes an id first; the
// device's real caller, with the same id, still has its own command run and its own answer; and
// a subscriber does not take another device's event under an id for a repeat of the real one.
import mqtt from 'mqtt'
import { describe, expect, it } from 'vitest'
import { freshAedes } from '../helpers/aedes.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { startDeviceUnderAttack } from '../helpers/device-under-attack.js'
import { commandSlots, eventSlots, rawDecoder, rawFrame, rawId } from '../helpers/raw-wire.js'

describe('message ids are the sender\'s own', () => {
  const cleanup = cleanupAfterEach()

  it("another client's command under the same id neither runs in place of a caller's command nor gets its reply", async () => {
    const broker = await freshAedes()
    cleanup(() => broker.close())
    const device = await startDeviceUnderAttack(broker)
    cleanup(() => device.stop())

    const intruder = await mqtt.connectAsync(broker.url, { clientId: 'intruder', reconnectPeriod: 0 })
    cleanup(() => intruder.endAsync(true))
    const heard: unknown[][] = []
    intruder.on('message', (_t, frame) => heard.push(rawDecoder.decode(frame) as unknown[]))
    await intruder.subscribeAsync('ob/+/rep/intruder', { qos: 1 })

    const id = rawId()
    const frame = rawFrame(commandSlots({ id, src: 'intruder', service: 'target', name: 'put', target: device.deviceId, payload: { name: 'intruder', n: 666 } }))
    await intruder.publishAsync(`ob/intruder/cmd/${device.deviceId}/target/1/put`, frame, { qos: 1 })
    const deadline = Date.now() + 15_000
    while (heard.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
    expect(heard.map((a) => [a[9], a[16]])).toEqual([[id, { ok: true, n: 666 }]])

    // The caller's command under the same id runs, and its answer is its own and reaches it.
    const mine = await device.call('put', { name: 'caller', n: 7 }, { id })
    expect([mine.error, mine.payload]).toEqual([undefined, { ok: true, n: 7 }])
    // The intruder's repeat is still a repeat of its own: the stored reply, to it alone.
    await intruder.publishAsync(`ob/intruder/cmd/${device.deviceId}/target/1/put`, frame, { qos: 1 })
    const again = await device.call('put', { name: 'caller', n: 7 }, { id })
    expect(again.payload).toEqual({ ok: true, n: 7 })
    while (heard.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
    expect(heard.map((a) => a[16])).toEqual([{ ok: true, n: 666 }, { ok: true, n: 666 }])
  }, 60_000)

  it("another device's event under the same id does not make a subscriber drop the real one as a repeat", async () => {
    const broker = await freshAedes()
    cleanup(() => broker.close())
    const device = await startDeviceUnderAttack(broker)
    cleanup(() => device.stop())
    const other = await mqtt.connectAsync(broker.url, { clientId: 'other', reconnectPeriod: 0 })
    cleanup(() => other.endAsync(true))
    const before = (await device.probe()).readings
    const id = rawId()
    // The device subscribes to `reading` from any device: the intruder's counts, and so does the real one.
    await other.publishAsync('ob/intruder/evt/sensor/1/reading', rawFrame(eventSlots({ id, src: 'intruder', service: 'sensor', name: 'reading', payload: { value: 1 } })), { qos: 1 })
    await other.publishAsync('ob/fz1/evt/sensor/1/reading', rawFrame(eventSlots({ id, src: 'fz1', service: 'sensor', name: 'reading', payload: { value: 2 } })), { qos: 1 })
    // A repeat of the same sender's event is dropped.
    await other.publishAsync('ob/fz1/evt/sensor/1/reading', rawFrame(eventSlots({ id, src: 'fz1', service: 'sensor', name: 'reading', payload: { value: 2 } })), { qos: 1 })
    // A command after them on the device's connection: they were handled first.
    await device.call('put', { name: 'after', n: 1 })
    expect((await device.probe()).readings - before).toBe(2)
  }, 60_000)
})

