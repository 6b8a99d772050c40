// Frames too large to send are refused where they are made, with FRAME_TOO_LARGE, and nothing
// behind them waits. Before, a device could emit an event larger than any receiver takes: its
// outbox kept it (a broker with a smaller packet limit closed the connection on it, after every
// reconnect), and every later event waited behind it for ever. Driven over a real aedes broker
// with MQTT bridges; what arrives is watched with a plain MQTT client.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import mqtt from 'mqtt'
import * as v from 'valibot'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { MqttBroker } from '../../gateway/broker/mqtt-broker.js'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createRuntime, defineContract, defineService, ErrorCode, type Runtime } from '../../runtime/index.js'
import { createSqliteOutbox, createSqliteQueueStore, openDeviceDatabase, type DeviceDatabase } from '../../runtime/stores/sqlite/index.js'
import { freshAedes } from '../helpers/aedes.js'
import { freePort } from '../helpers/wait.js'

const LIMIT = 64 * 1024 // the bridges' maxPayloadBytes in this file

const big = defineContract({
  name: 'big',
  version: '1',
  events: { blob: v.object({ s: v.string() }), small: v.object({ n: v.number() }) },
  commands: {
    emit: { payload: v.object({ chars: v.number() }), result: v.object({ ok: v.boolean() }) },
    answer: { payload: v.object({ chars: v.number() }), result: v.object({ s: v.string() }) },
    take: { payload: v.object({ s: v.string() }), result: v.object({ n: v.number() }) },
  },
  queues: { make: { payload: v.object({ chars: v.number() }), result: v.object({ s: v.string() }), results: 'required' } },
})

/** The device's service: emits, answers and makes strings of the length asked for. */
const bigService = () =>
  defineService(big, {
    commands: {
      emit: async ({ chars }, ctx) => {
        await ctx.emit('blob', { s: 'x'.repeat(chars) })
        return { ok: true }
      },
      answer: ({ chars }) => ({ s: 'y'.repeat(chars) }),
      take: ({ s }) => ({ n: s.length }),
    },
    workers: { make: ({ chars }) => ({ s: 'z'.repeat(chars) }) },
  })

const caught = async (p: Promise<unknown>): Promise<{ code?: string; message?: string } | undefined> =>
  p.then(
    () => undefined,
    (e: unknown) => e as { code?: string; message?: string },
  )

describe('outgoing frames over the size limit', () => {
  let broker: MqttBroker
  let device: Runtime
  let caller: Runtime
  let database: DeviceDatabase
  let dir: string
  let watcher: mqtt.MqttClient
  const seen: { topic: string; bytes: number }[] = []

  beforeAll(async () => {
    broker = await freshAedes()
    dir = mkdtempSync(path.join(tmpdir(), 'outpost-frame-size-'))
    database = openDeviceDatabase({ path: path.join(dir, 'device.db') })
    const svc = bigService()
    device = createRuntime({
      bridge: createMqttBridge({ url: broker.url, deviceId: 'big-device', maxPayloadBytes: LIMIT }),
      services: [svc],
      outbox: createSqliteOutbox(database),
      queueStore: createSqliteQueueStore(database),
    })
    caller = createRuntime({ bridge: createMqttBridge({ url: broker.url, deviceId: 'big-caller', maxPayloadBytes: LIMIT }), discoveryWaitMs: 10_000 })
    watcher = await mqtt.connectAsync(broker.url, { clientId: 'frame-watcher' })
    watcher.on('message', (topic, payload) => void seen.push({ topic, bytes: payload.length }))
    await watcher.subscribeAsync('#', { qos: 1 })
    await device.start()
    await caller.start()
  })

  afterAll(async () => {
    await watcher?.endAsync()
    await caller?.stop()
    await device?.stop()
    database?.close()
    await broker?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  const waitFor = async (what: () => boolean): Promise<void> => {
    for (let i = 0; i < 400 && !what(); i++) await new Promise((r) => setTimeout(r, 25))
    expect(what()).toBe(true)
  }

  it('an event too large is refused at emit with FRAME_TOO_LARGE; the outbox keeps nothing of it, and the next event goes out', async () => {
    const client = caller.client(big)
    const err = await caught(client.emit({ chars: LIMIT + 1 }))
    // The handler's emit failed: the caller hears the code.
    expect(err?.code).toBe(ErrorCode.FRAME_TOO_LARGE)
    expect(device.stats().outbox).toMatchObject({ entries: 0 })
    // An event that fits, after it, is delivered.
    await client.emit({ chars: 10 })
    await waitFor(() => seen.some((m) => m.topic.includes('/blob') && m.bytes < 200))
    expect(seen.filter((m) => m.bytes > LIMIT)).toEqual([])
    expect(device.stats().outbox).toMatchObject({ entries: 0 })
  })

  it('a command whose payload is too large fails at the caller; one whose reply is too large gets FRAME_TOO_LARGE back, not a timeout', async () => {
    const client = caller.client(big)
    const tooBig = await caught(client.take({ s: 'q'.repeat(LIMIT) }))
    expect(tooBig?.code).toBe(ErrorCode.FRAME_TOO_LARGE)
    // Answered with the code (before, the reply was never sent and the call ended in TIMEOUT).
    const reply = await caught(client.answer({ chars: LIMIT + 1 }, { timeoutMs: 15_000 }))
    expect(reply?.code).toBe(ErrorCode.FRAME_TOO_LARGE)
    expect(reply?.message).toContain('frame limit')
    expect(await client.answer({ chars: 5 })).toEqual({ s: 'yyyyy' })
    expect(seen.filter((m) => m.bytes > LIMIT)).toEqual([])
  })

  it('a job whose result is too large is given up with FRAME_TOO_LARGE (its dead event goes out); the jobs after it complete', async () => {
    const q = device.queue(big, 'make')
    const tooBig = q.enqueue({ chars: LIMIT + 1 })
    const fine = q.enqueue({ chars: 3 })
    await waitFor(() => q.get(tooBig.id)?.state === 'dead' && q.get(fine.id)?.state === 'completed')
    expect(q.get(tooBig.id)).toMatchObject({ state: 'dead', errorCode: ErrorCode.FRAME_TOO_LARGE })
    await waitFor(() => seen.some((m) => m.topic.includes('make.dead')) && seen.some((m) => m.topic.includes('make.completed')))
    expect(seen.filter((m) => m.bytes > LIMIT)).toEqual([])
  })
})

describe('an outbox entry stored when the limit was higher', () => {
  it('is dropped and counted when the device starts with the lower limit, and the events behind it go out', async () => {
    const broker = await freshAedes()
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-frame-lowered-'))
    const seen: { topic: string; bytes: number }[] = []
    const watcher = await mqtt.connectAsync(broker.url, { clientId: 'lowered-watcher' })
    try {
      watcher.on('message', (topic, payload) => void seen.push({ topic, bytes: payload.length }))
      await watcher.subscribeAsync('ob/lowered/evt/#', { qos: 1 })
      const svc = bigService()
      const run = (url: string, maxPayloadBytes: number) => {
        const database = openDeviceDatabase({ path: path.join(dir, 'device.db') })
        const runtime = createRuntime({
          bridge: createMqttBridge({ url, deviceId: 'lowered', maxPayloadBytes, reconnect: { initialMs: 50, maxMs: 200 } }),
          services: [svc],
          outbox: createSqliteOutbox(database),
          queueStore: createSqliteQueueStore(database),
        })
        return { runtime, database }
      }
      // Offline with a limit four times higher: the large event and three small ones are stored.
      const before = run(`mqtt://127.0.0.1:${await freePort()}`, 4 * LIMIT)
      await before.runtime.start()
      const local = before.runtime.client(big)
      await local.emit({ chars: 2 * LIMIT })
      for (let i = 0; i < 3; i++) await local.emit({ chars: 10 })
      expect(before.runtime.stats().outbox).toMatchObject({ entries: 4 })
      await before.runtime.stop({ drainMs: 0 })
      before.database.close()

      const after = run(broker.url, LIMIT)
      await after.runtime.start()
      try {
        for (let i = 0; i < 400 && seen.length < 3; i++) await new Promise((r) => setTimeout(r, 25))
        expect(seen.map((m) => m.bytes < 200)).toEqual([true, true, true])
        const outbox = after.runtime.stats().outbox!
        expect(outbox.entries).toBe(0)
        expect(Object.entries(outbox.dropped)).toEqual([[expect.stringMatching(/^too-large:/), 1]])
      } finally {
        await after.runtime.stop()
        after.database.close()
      }
    } finally {
      await watcher.endAsync()
      await broker.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
