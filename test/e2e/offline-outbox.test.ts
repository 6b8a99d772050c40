// Events emitted while the broker is away wait in the SQLite outbox and arrive, in order, later —
// also when the device restarted in between.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Decoder } from 'cbor-x'
import mqtt from 'mqtt'
import * as v from 'valibot'
import { describe, expect, it } from 'vitest'
import { startMqttBroker, type MqttBroker } from '../../gateway/broker/mqtt-broker.js'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createRuntime, defineContract, defineService, type Runtime } from '../../runtime/index.js'
import { createSqliteOutbox, openDeviceDatabase, type DeviceDatabase } from '../../runtime/stores/sqlite/index.js'
import { freePort, until } from '../helpers/wait.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'

const meter = defineContract({
  name: 'meter',
  version: '1',
  commands: { record: { payload: v.object({ from: v.number(), count: v.number() }), result: v.object({ emitted: v.number() }) } },
  events: { sample: v.object({ seq: v.number() }) },
})
const meterService = defineService(meter, {
  commands: {
    record: async ({ from, count }, ctx) => {
      for (let i = 0; i < count; i++) await ctx.emit('sample', { seq: from + i })
      return { emitted: count }
    },
  },
})


describe('offline emission through the SQLite outbox', () => {
  const cleanup = cleanupAfterEach()

  it('delivers events emitted while the broker was away, in order, after a restart of the device too', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-offline-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    const port = await freePort()
    const url = `mqtt://127.0.0.1:${port}`
    const boot = async (): Promise<{ rt: Runtime; db: DeviceDatabase }> => {
      const db = openDeviceDatabase({ path: path.join(dir, 'meter.db') })
      const rt = createRuntime({
        bridge: createMqttBridge({ url, deviceId: 'meter-1', reconnect: { initialMs: 50, maxMs: 200 } }),
        services: [meterService],
        outbox: createSqliteOutbox(db),
      })
      await rt.start() // no broker yet: starts offline
      return { rt, db }
    }

    // Offline: 150 events are accepted and stored.
    const first = await boot()
    expect(await first.rt.client(meter).record({ from: 0, count: 150 })).toEqual({ emitted: 150 })
    expect(first.rt.stats().outbox?.entries).toBe(150)
    // The device restarts, still offline, and adds 50 more.
    await first.rt.stop({ drainMs: 100 })
    first.db.close()
    const second = await boot()
    cleanup(async () => {
      await second.rt.stop({ drainMs: 200 })
      second.db.close()
    })
    await second.rt.client(meter).record({ from: 150, count: 50 })
    expect(second.rt.stats().outbox?.entries).toBe(200)

    // The broker comes up; a plain MQTT subscriber is there first (the device is turned away until then).
    let listenerReady = false
    const broker: MqttBroker = await startMqttBroker({
      port,
      aedes: { authenticate: (client, _u, _p, done) => done(null, client.id !== 'meter-1' || listenerReady) },
    })
    cleanup(() => broker.close())
    const sub = await mqtt.connectAsync(url, { clientId: 'listener' })
    cleanup(() => sub.endAsync())
    const dec = new Decoder({ useRecords: false, mapsAsObjects: true })
    const got: { id: string; seq: number }[] = []
    sub.on('message', (_t, buf) => {
      const a = dec.decode(buf) as unknown[]
      got.push({ id: a[2] as string, seq: (a[16] as { seq: number }).seq })
    })
    await sub.subscribeAsync('ob/meter-1/evt/meter/1/sample', { qos: 1 })
    listenerReady = true

    await until(() => second.rt.stats().outbox?.entries === 0 && new Set(got.map((g) => g.id)).size === 200, 10_000)
    // At least once, each id once after dedupe, and in order of first arrival.
    const firstSeen = new Map<string, number>()
    for (const g of got) if (!firstSeen.has(g.id)) firstSeen.set(g.id, g.seq)
    expect([...firstSeen.values()]).toEqual(Array.from({ length: 200 }, (_, i) => i))
    expect(second.rt.stats().outbox?.delivered).toBeGreaterThanOrEqual(50)
  }, 30_000)
})
