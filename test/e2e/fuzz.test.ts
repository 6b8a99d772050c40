// The CI fuzz test (issue 11): a plain mqtt.js client sends ≥ 100,000 mutated frames — commands,
// subscribed events, events bound to a durable queue, replies — to a real device process over the
// gateway's aedes, and an oversized publish once. Afterwards the device must still serve, be on
// its first connection, and have kept its memory, database and log bounded. The seed is printed;
// replay a failure with FUZZ_SEED=<seed> (and FUZZ_FRAMES=<n> to shorten a run while looking).
import { once } from 'node:events'
import { setTimeout } from 'node:timers/promises'
import mqtt from 'mqtt'
import { describe, expect, it } from 'vitest'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { eventually, residentBytes, startPingingDevice, type DeviceUnderAttack } from '../helpers/device-under-attack.js'
import { createFrameMutator, seededRandom, type FuzzFrame } from '../helpers/frame-mutator.js'
import { eventSlots, rawFrame } from '../helpers/raw-wire.js'
import { until } from '../helpers/wait.js'

const FRAMES = Number(process.env.FUZZ_FRAMES ?? 100_000)
const SEED = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 32))
// FUZZ_TRACE=<n> prints the device's memory and database every n frames.
const TRACE = Number(process.env.FUZZ_TRACE ?? 0)
const MiB = 1024 * 1024

describe('a device process flooded with mutated frames', () => {
  const cleanup = cleanupAfterEach()

  it('keeps serving on its first connection, with memory, database and log bounded', async () => {
    console.log(`fuzz seed ${SEED}: replay with FUZZ_SEED=${SEED} npx vitest run test/e2e/fuzz.test.ts`)
    // The device calls a peer written by hand every 100 ms.
    const { broker, peer, device } = await startPingingDevice(cleanup)

    const attacker = await mqtt.connectAsync(broker.url, { clientId: 'attacker', reconnectPeriod: 100 })
    cleanup(() => attacker.endAsync(true))
    const scene = { device: device.deviceId, pendingCorr: () => peer.answered.at(-1) }
    const attackerClosed = new Promise<void>((r) => attacker.once('close', () => r()))
    const last: string[] = []
    const inflight = new Set<Promise<unknown>>()
    const send = async (f: FuzzFrame): Promise<void> => {
      last.push(f.what)
      if (last.length > 30) last.shift()
      if (f.qos === 1) {
        const p = attacker.publishAsync(f.topic, f.frame, { qos: 1 }).catch(() => undefined)
        inflight.add(p)
        void p.finally(() => inflight.delete(p))
        if (inflight.size >= 64) await Promise.race(inflight)
      } else {
        attacker.publish(f.topic, f.frame, { qos: 0 })
      }
      // Paced by the socket: what the broker has not read yet waits here, not in our memory.
      if (attacker.stream.writableNeedDrain) await Promise.race([once(attacker.stream, 'drain'), attackerClosed, setTimeout(10_000)])
    }
    // Every so often the device must answer a valid command: it keeps the flood at the device's
    // pace, and a device that went deaf fails here, naming the frames just before and its counters.
    const barrier = async (i: number): Promise<void> => {
      await Promise.all(inflight)
      const r = await device.call('put', { name: 'barrier', n: i }, { timeoutMs: 30_000 }).catch((err: unknown) => err as Error)
      if (!(r instanceof Error) && r.error === undefined) return
      device.child.kill('SIGUSR2')
      await until(() => device.tail().includes('stats queues'), 5_000).catch(() => undefined)
      const cause = r instanceof Error ? r.message : `${r.error!.code}: ${r.error!.message}`
      throw new Error(`device stopped answering after frame ${i} (seed ${SEED}); last frames: ${last.join(' ')}\n${cause}\n${device.tail()}`)
    }

    // Warm-up: the same kinds of frames (another stream of the seed), big ones among them, so the
    // baseline is taken once the device's caches and allocators have seen every kind of frame.
    const warmUp = createFrameMutator(SEED ^ 0x5bd1e995, scene)
    for (let i = 0; i < 10_000; i++) {
      await send(warmUp.next({ big: i % 250 === 125 }))
      if (i % 2_000 === 1_999) await barrier(i - 10_000)
    }
    const base = await device.probe()
    const baseDb = device.dbBytes()
    const baseLines = device.lines()

    const fuzz = createFrameMutator(SEED, scene)
    const oversizeBytes = (8 + Math.floor(seededRandom(SEED)() * 57)) * MiB
    for (let i = 0; i < FRAMES; i++) {
      await send(fuzz.next({ big: i % 250 === 125 }))
      if (i === Math.floor(FRAMES / 2)) await oversize(broker.url, device, oversizeBytes)
      if (i % 2_000 === 1_999) await barrier(i)
      if (TRACE > 0 && i % TRACE === TRACE - 1) {
        const p = await device.probe()
        console.log(`frame ${i + 1}: resident +${((residentBytes(p) - residentBytes(base)) / MiB).toFixed(1)} MiB, rss +${((p.rss - base.rss) / MiB).toFixed(1)} MiB, heap physical +${((p.heapPhysical - base.heapPhysical) / MiB).toFixed(1)} MiB, heap +${((p.heapUsed - base.heapUsed) / MiB).toFixed(1)} MiB, db +${((device.dbBytes() - baseDb) / MiB).toFixed(1)} MiB`)
      }
    }
    await Promise.all(inflight)
    console.log(`fuzz frames by mutation: ${JSON.stringify(fuzz.tally())}; oversized publish of ${oversizeBytes / MiB} MiB`)

    // Still running, still serving commands, subscriptions, bindings and its own calls.
    expect(device.alive(), device.tail()).toBe(true)
    const answer = await device.call('put', { name: 'after', n: 7 }, { timeoutMs: 30_000 })
    expect(answer.error).toBeUndefined()
    expect(answer.payload).toEqual({ ok: true, n: 7 })
    const before = await device.probe()
    await attacker.publishAsync('ob/fz1/evt/sensor/1/sample', rawFrame(eventSlots({ src: 'fz1', service: 'sensor', name: 'sample', payload: { at: 123_456_789 } })), { qos: 1 })
    await attacker.publishAsync('ob/fz1/evt/sensor/1/reading', rawFrame(eventSlots({ src: 'fz1', service: 'sensor', name: 'reading', payload: { value: 1 } })), { qos: 1 })
    await eventually(
      async () => {
        const p = await device.probe()
        return p.lastSample === 123_456_789 && p.readings > before.readings && p.pingsOk > before.pingsOk
      },
      30_000,
      'a bound event becoming a job, a subscribed event handled and a call of its own answered',
    )

    // On its first connection, with memory, database and log about where they were (memory
    // without the free heap V8 keeps committed after a collection: see residentBytes).
    const after = await device.probe()
    const grown = {
      residentMiB: (residentBytes(after) - residentBytes(base)) / MiB,
      rssMiB: (after.rss - base.rss) / MiB,
      heapMiB: (after.heapUsed - base.heapUsed) / MiB,
      externalMiB: (after.external - base.external) / MiB,
      dbMiB: (device.dbBytes() - baseDb) / MiB,
      lines: device.lines() - baseLines,
    }
    console.log(`after ${FRAMES} frames: ${JSON.stringify(grown)}; rss ${(after.rss / MiB).toFixed(1)} MiB; received ${after.received - base.received}`)
    expect(device.connects()).toBe(1)
    expect(grown.residentMiB).toBeLessThanOrEqual(16)
    expect(grown.dbMiB).toBeLessThanOrEqual(32)
    expect(grown.lines, device.tail()).toBeLessThanOrEqual(300)
  }, 240_000)
})

/** One publish of `bytes` (far beyond any frame limit) from a client of its own, which the broker may cut off. */
async function oversize(url: string, device: DeviceUnderAttack, bytes: number): Promise<void> {
  const c = await mqtt.connectAsync(url, { clientId: 'oversize', reconnectPeriod: 0 })
  const closed = new Promise<void>((r) => c.once('close', () => r()))
  const sent = new Promise<void>((r) => c.publish(`ob/oversize/cmd/${device.deviceId}/target/1/put`, Buffer.alloc(bytes, 0x61), { qos: 0 }, () => r()))
  await Promise.race([sent, closed])
  // A clean end flushes the publish before DISCONNECT; a broker that refused it has closed already.
  await Promise.race([c.endAsync(), closed])
}
