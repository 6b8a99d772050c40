// Event-to-queue bindings over a real broker (aedes), fed by a plain mqtt.js client: an event
// becomes exactly one job even when delivered twice, bad events wait in the dead letters, and
// the device acknowledges an event to the broker only once its job is committed.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Encoder } from 'cbor-x'
import mqtt from 'mqtt'
import * as v from 'valibot'
import { describe, expect, it } from 'vitest'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createManualClock, createRuntime, defineContract, defineService, ErrorCode, OutpostError, type QueueStore } from '../../runtime/index.js'
import { createEnvelopeCodec } from '../../runtime/index.js'
import { createSqliteOutbox, createSqliteQueueStore, openDeviceDatabase } from '../../runtime/stores/sqlite/index.js'
import { freshAedes } from '../helpers/aedes.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { freePort, until } from '../helpers/wait.js'

const camera = defineContract({ name: 'camera', version: '1', events: { taken: v.object({ photo: v.number(), size: v.optional(v.number()) }) } })
const archive = defineContract({
  name: 'archive',
  version: '1',
  queues: { store: { payload: v.object({ photo: v.number() }), result: v.object({ stored: v.boolean() }) } },
})

// Envelope v1 written by hand (runtime/wire/README.md): an event from device cam-9.
const enc = new Encoder({ useRecords: false })
let seq = 0
const eventFrame = (payload: unknown, id = `EVENTFROMCAMERA${String(++seq).padStart(11, '0')}`): { id: string; frame: Buffer } => ({
  id,
  frame: enc.encode([1, 2, id, 'cam-9', 'i1', Date.now(), 'camera', '1', 'taken', 'occ-1', null, null, null, null, null, null, payload]),
})
const TOPIC = 'ob/cam-9/evt/camera/1/taken'

describe('event-to-queue bindings over MQTT', () => {
  const cleanup = cleanupAfterEach()

  async function setup(wrap: (s: QueueStore) => QueueStore = (s) => s) {
    const broker = await freshAedes()
    cleanup(() => broker.close())
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-binding-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    const database = openDeviceDatabase({ path: path.join(dir, 'device.db') })
    const ran: number[] = []
    const correlations: (string | undefined)[] = []
    const svc = defineService(archive, {
      commands: {},
      workers: {
        store: ({ photo }, ctx) => {
          ran.push(photo)
          correlations.push(ctx.job.correlationId)
          return { stored: true }
        },
      },
      bindings: (b) => ({ photos: b.event(camera, 'taken', 'store', { payload: (p) => ({ photo: p.photo }) }) }),
    })
    const rt = createRuntime({ bridge: createMqttBridge({ url: broker.url, deviceId: 'arch-1' }), services: [svc], queueStore: wrap(createSqliteQueueStore(database)) })
    await rt.start({ waitForBroker: true })
    cleanup(() => database.close(), () => rt.stop({ drainMs: 200 }))
    const raw = await mqtt.connectAsync(broker.url, { clientId: 'cam-9' })
    cleanup(() => raw.endAsync())
    return { broker, rt, raw, ran, correlations, q: rt.queue(archive, 'store') }
  }

  it('turns an event delivered twice into exactly one job, correlated with the event', async () => {
    const { rt, raw, ran, correlations, q } = await setup()
    const { frame } = eventFrame({ photo: 42 })
    await raw.publishAsync(TOPIC, frame, { qos: 1 })
    await raw.publishAsync(TOPIC, frame, { qos: 1, dup: true }) // the broker delivering it again
    await until(() => rt.stats().eventsBound + rt.stats().duplicateEvents === 2)
    await until(() => ran.length === 1)
    await new Promise((r) => setTimeout(r, 50))
    expect(ran).toEqual([42])
    expect(rt.stats()).toMatchObject({ eventsBound: 1, duplicateEvents: 1 })
    expect(q.metrics()).toMatchObject({ completed: 1, ready: 0, dead: 0 })
    expect(correlations).toEqual(['occ-1']) // the event's correlation (here a schedule occurrence) carries on
  })

  it('keeps an event that cannot become a job in the dead letters, with the reason', async () => {
    const { rt, raw, q } = await setup()
    await raw.publishAsync(TOPIC, eventFrame({ photo: 'not a number' }).frame, { qos: 1 })
    await until(() => q.metrics().dead === 1)
    const [dead] = q.listDead()
    expect(dead).toMatchObject({ deadReason: 'invalid', errorCode: 'VALIDATION_FAILED', payload: { photo: 'not a number' } })
    expect(dead!.error).toMatch(/photo/)
    expect(rt.stats().eventsRejected).toBe(1)
  })

  it('acknowledges the event to the broker only after its job is committed', async () => {
    let failuresLeft = 1
    let committedAt = 0
    const { broker, raw, ran } = await setup((store) => ({
      ...store,
      enqueue(input, now) {
        // Busy (another writer): the one store error that is waited out with the acknowledgement held back.
        if (failuresLeft-- > 0) throw new OutpostError(ErrorCode.STORE_BUSY, 'database is locked (injected)', { retryable: true })
        const out = store.enqueue(input, now)
        committedAt = performance.now()
        return out
      },
    }))
    let ackedAt = 0
    broker.aedes.on('ack', (packet, client) => {
      if (client?.id === 'arch-1' && (packet as { topic?: string } | undefined)?.topic === TOPIC) ackedAt = performance.now()
    })
    await raw.publishAsync(TOPIC, eventFrame({ photo: 7 }).frame, { qos: 1 })
    await until(() => ackedAt > 0, 5_000)
    expect(committedAt).toBeGreaterThan(0)
    expect(ackedAt).toBeGreaterThanOrEqual(committedAt)
    await until(() => ran.length === 1)
    expect(ran).toEqual([7])
  })
})

describe('a device without its broker', () => {
  const cleanup = cleanupAfterEach()

  it('keeps its own schedule → event → queue → result chain running, results waiting in the outbox', async () => {
    const sensor = defineContract({
      name: 'sensor',
      version: '1',
      events: { sample: v.object({ at: v.number() }) },
      queues: { digest: { payload: v.object({ at: v.number() }), result: v.object({ at: v.number() }) } },
    })
    const heard: string[] = []
    const svc = defineService(sensor, {
      commands: {},
      schedules: (s) => ({ tick: s.every(1_000, 'sample', (o) => ({ at: o.at })) }),
      bindings: (b) => ({ samples: b.event(sensor, 'sample', 'digest', { device: 'sensor-1' }) }),
      workers: { digest: ({ at }) => ({ at }) },
      subscriptions: (s) => ({ log: s.on(sensor, 'sample', (_p, ctx) => void heard.push(ctx.event.id), { device: 'sensor-1' }) }),
    })
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-offline-chain-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    const database = openDeviceDatabase({ path: path.join(dir, 'device.db') })
    const outbox = createSqliteOutbox(database)
    const clock = createManualClock(Date.UTC(2026, 10, 23, 12, 0, 0, 500))
    const port = await freePort() // nothing listens there
    const rt = createRuntime({ bridge: createMqttBridge({ url: `mqtt://127.0.0.1:${port}`, deviceId: 'sensor-1' }), services: [svc], clock, queueStore: createSqliteQueueStore(database), outbox })
    cleanup(() => database.close(), () => rt.stop({ drainMs: 100 }))
    await rt.start()
    for (let i = 0; i < 5; i++) await clock.advance(1_000)
    const digest = rt.queue(sensor, 'digest')
    await until(() => digest.metrics().completed === 5)
    expect(heard).toHaveLength(5)
    // In the outbox, in order: each sample, then (once its job ran) its result, correlated by occurrence.
    const codec = createEnvelopeCodec()
    const waiting = outbox.peek(0, 100).map((e) => codec.decode(e.frame)).flatMap((d) => (d.ok ? [d.envelope] : []))
    const results = waiting.filter((e) => e.name === 'digest.completed')
    expect(waiting.filter((e) => e.name === 'sample')).toHaveLength(5)
    expect(results.map((e) => e.corr)).toEqual(waiting.filter((e) => e.name === 'sample').map((e) => e.corr))
    expect(results.map((e) => (e.payload as { output: { at: number } }).output.at)).toEqual([1, 2, 3, 4, 5].map((k) => Date.UTC(2026, 10, 23, 12, 0, k)))
  })
})
