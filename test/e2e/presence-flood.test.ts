// Presence of made-up devices, sent by a plain MQTT client to a real device process. Each
// presence kept within the directory's bounds per device (64 services of 256 commands each), but
// nothing bounded them all: 4,000 such frames took a device from 100 MB to 3 GB (found from
// outside). The directory now holds at most 65,536 names in all; past that a further device's
// presence is ignored, counted and logged, and the device's own calls keep working.
// A device that announces ever new service names leaves nothing behind of the old ones.
import mqtt from 'mqtt'
import { describe, expect, it } from 'vitest'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { eventually, residentBytes, startPingingDevice } from '../helpers/device-under-attack.js'
import { presenceSlots, rawFrame } from '../helpers/raw-wire.js'

const MiB = 1024 * 1024
// Each frame: 64 services of 256 commands (16,448 names, ~190 KB of CBOR), within the per-device bounds.
const FRAMES = 150
const frameOf = (device: string): Buffer =>
  rawFrame(
    presenceSlots({
      src: device,
      services: Array.from({ length: 64 }, (_, s) => ({ name: `s${s}`, version: '1', commands: Array.from({ length: 256 }, (_, c) => `${device}-c${c}`), events: [] })),
    }),
  )

describe('a device process sent the presence of thousands of made-up devices', () => {
  const cleanup = cleanupAfterEach()

  it('keeps its memory bounded, says it ignored them, and goes on calling its peer', async () => {
    const { broker, device } = await startPingingDevice(cleanup)
    const base = await device.probe()

    const attacker = await mqtt.connectAsync(broker.url, { clientId: 'attacker', reconnectPeriod: 0 })
    cleanup(() => attacker.endAsync(true))
    for (let i = 0; i < FRAMES; i++) {
      const id = `made-up-${i}`
      // Acknowledged: the broker has passed it on to the device before the next one.
      await attacker.publishAsync(`ob/${id}/status`, frameOf(id), { qos: 1 })
      // Every 25 frames a command (after the frames before it on the device's connection): the
      // flood goes at the device's pace, and the device answers throughout.
      if (i % 25 === 24) {
        const answer = await device.call('put', { name: `during-${i}`, n: i }, { timeoutMs: 30_000 })
        expect(answer.error, device.tail()).toBeUndefined()
      }
    }
    const after = await device.probe()
    const grownMiB = (residentBytes(after) - residentBytes(base)) / MiB
    const heapMiB = (after.heapUsed - base.heapUsed) / MiB
    console.log(`after ${FRAMES} presence frames: resident +${grownMiB.toFixed(1)} MiB, heap +${heapMiB.toFixed(1)} MiB, rss ${(after.rss / MiB).toFixed(1)} MiB`)
    // Held: 150 × 16,448 names took the heap up by 108 MiB; 65,536 names of about 16 characters
    // are a few. Resident memory also keeps what the allocator took for 36 MB of frames read
    // (about 30 MiB here, the same after 450 frames as after 150).
    expect(heapMiB).toBeLessThanOrEqual(16)
    expect(grownMiB).toBeLessThanOrEqual(64)
    expect(device.alive(), device.tail()).toBe(true)
    expect(device.connects()).toBe(1)
    await eventually(async () => (await device.probe()).pingsOk > after.pingsOk, 20_000, 'the device still calling its peer')
    expect(device.tail()).toContain('declares more than the directory keeps (devices)')

    // One device announcing ever new service names, each presence within every bound: what it
    // announced before leaves nothing behind (an empty map per name was kept: a gigabyte).
    const before = await device.probe()
    for (let i = 0; i < 4_000; i++) {
      const services = Array.from({ length: 64 }, (_, k) => ({ name: `n${i}-${k}-${'x'.repeat(40)}`, version: '1', commands: [], events: [] }))
      const frame = rawFrame(presenceSlots({ src: 'renamer', services }))
      if (i % 200 === 199) await attacker.publishAsync('ob/renamer/status', frame, { qos: 1 })
      else attacker.publish('ob/renamer/status', frame, { qos: 0 })
    }
    await device.call('put', { name: 'after-renames', n: 1 }, { timeoutMs: 30_000 })
    const renamed = await device.probe()
    const renamedMiB = (renamed.heapUsed - before.heapUsed) / MiB
    console.log(`after 4,000 presences of new names: heap +${renamedMiB.toFixed(1)} MiB`)
    expect(renamedMiB).toBeLessThanOrEqual(8)
  }, 180_000)
})
