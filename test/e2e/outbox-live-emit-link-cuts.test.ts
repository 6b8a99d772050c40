// Outside test (issue 12, direct publisher and the outbox tail): a running device emits 8,000
// events through its SQLite outbox while a TCP proxy cuts its link to aedes every ~150 ms, so the
// pump starts over from the oldest unacknowledged entry again and again while new entries keep
// arriving. A plain mqtt.js subscriber checks: every event id arrives at least once, first
// arrivals in emit order, and the outbox ends empty.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Decoder } from 'cbor-x'
import mqtt from 'mqtt'
import * as v from 'valibot'
import { describe, expect, it } from 'vitest'
import { startMqttBroker } from '../../gateway/broker/mqtt-broker.js'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createRuntime, defineContract, defineService } from '../../runtime/index.js'
import { createSqliteOutbox, openDeviceDatabase } from '../../runtime/stores/sqlite/index.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { tcpProxy } from '../helpers/tcp-proxy.js'
import { until } from '../helpers/wait.js'

const TOTAL = 8_000
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

describe('live emits through the outbox while the link is cut again and again', () => {
  const cleanup = cleanupAfterEach()

  it('delivers every event at least once, first arrivals in emit order', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-live-cuts-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    const broker = await startMqttBroker({ port: 0 })
    cleanup(() => broker.close())
    const proxy = await tcpProxy(broker.url)
    cleanup(() => proxy.close())
    const dec = new Decoder({ useRecords: false, mapsAsObjects: true })
    const got: { id: string; seq: number }[] = []
    const sub = await mqtt.connectAsync(broker.url, { clientId: 'live-counter' })
    cleanup(() => sub.endAsync(true))
    sub.on('message', (_t, buf) => {
      const a = dec.decode(buf) as unknown[]
      got.push({ id: a[2] as string, seq: (a[16] as { seq: number }).seq })
    })
    await sub.subscribeAsync('ob/live-1/evt/meter/1/sample', { qos: 1 })

    const db = openDeviceDatabase({ path: path.join(dir, 'live.db') })
    const rt = createRuntime({
      bridge: createMqttBridge({ url: proxy.url, deviceId: 'live-1', reconnect: { initialMs: 10, maxMs: 40 } }),
      services: [meterService],
      outbox: createSqliteOutbox(db),
    })
    await rt.start()
    cleanup(async () => {
      await rt.stop({ drainMs: 200 })
      db.close()
    })

    let cutting = true
    let cuts = 0
    const cutter = (async () => {
      while (cutting) {
        await new Promise((r) => setTimeout(r, 100 + Math.random() * 100))
        if (cutting) (proxy.cut(), cuts++)
      }
    })()
    for (let from = 0; from < TOTAL; from += 100) {
      expect(await rt.client(meter).record({ from, count: 100 })).toEqual({ emitted: 100 })
      if (from % 1_000 === 0) await new Promise((r) => setTimeout(r, 20))
    }
    // Cut until half arrived and the link was cut a few times (a fast run got there after 3 cuts).
    await until(() => new Set(got.map((g) => g.seq)).size >= TOTAL / 2 && cuts > 3, 30_000)
    cutting = false
    await cutter
    await until(() => rt.stats().outbox?.entries === 0, 30_000)
    await until(() => new Set(got.map((g) => g.id)).size === TOTAL, 10_000).catch(() => {})

    expect(cuts).toBeGreaterThan(3)
    const firstSeen = new Map<string, number>()
    for (const g of got) if (!firstSeen.has(g.id)) firstSeen.set(g.id, g.seq)
    const seqs = [...firstSeen.values()]
    const missing = TOTAL - new Set(seqs).size
    expect(missing, `${missing} of ${TOTAL} events never arrived`).toBe(0)
    expect(seqs).toEqual(Array.from({ length: TOTAL }, (_, i) => i))
  }, 90_000)
})
