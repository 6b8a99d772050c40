// Capacity does not depend on MQTT's 16-bit packet ids: a backlog of 1,000,000 events drains.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import mqtt from 'mqtt'
import { describe, expect, it } from 'vitest'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createEnvelopeCodec, createMessageIdFactory, createRuntime, ENVELOPE_VERSION } from '../../runtime/index.js'
import { createSqliteOutbox, openDeviceDatabase } from '../../runtime/stores/sqlite/index.js'
import { freshAedes } from '../helpers/aedes.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'

const TOTAL = 1_000_000

describe('a backlog of a million events', () => {
  const cleanup = cleanupAfterEach()

  it('drains completely, in order, once the broker is reachable', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-million-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    const database = openDeviceDatabase({ path: path.join(dir, 'device.db') })
    cleanup(() => database.close())
    const outbox = createSqliteOutbox(database, { limits: { events: { maxBytes: 1024 * 1024 * 1024, policy: 'reject' } } })

    // What a device offline for a long time would have accumulated (filled in batches to keep the test short).
    const codec = createEnvelopeCodec()
    const ids = createMessageIdFactory()
    const topic = 'ob/logger-1/evt/logger/1/line'
    const fill = database.db.transaction((from: number, to: number) => {
      for (let n = from; n < to; n++) {
        const frame = codec.encode({ v: ENVELOPE_VERSION, kind: 'event', id: ids(), src: 'logger-1', inst: 'i', at: n, service: 'logger', version: '1', name: 'line', payload: { n } })
        outbox.append({ stream: 'events', topic, frame, retain: false })
      }
    })
    for (let n = 0; n < TOTAL; n += 50_000) fill(n, n + 50_000)
    expect(outbox.stats().entries).toBe(TOTAL)

    const broker = await freshAedes()
    cleanup(() => broker.close())
    let received = 0
    let last = -1
    let ordered = true
    const sub = await mqtt.connectAsync(broker.url, { clientId: 'tail' })
    cleanup(() => sub.endAsync())
    sub.on('message', (_t, buf) => {
      received++
      const n = codec.decode(buf)
      if (n.ok) {
        const v = (n.envelope.payload as { n: number }).n
        if (v <= last) ordered = false
        last = v
      }
    })
    await sub.subscribeAsync(topic, { qos: 0 })

    const rt = createRuntime({ bridge: createMqttBridge({ url: broker.url, deviceId: 'logger-1' }), outbox })
    cleanup(() => rt.stop({ drainMs: 1_000 }))
    await rt.start({ waitForBroker: true })
    const end = Date.now() + 170_000
    while ((rt.stats().outbox?.entries ?? 1) > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 100))
    expect(rt.stats().outbox?.entries).toBe(0)
    expect(rt.stats().outbox?.delivered).toBe(TOTAL)
    while (received < TOTAL && Date.now() < end) await new Promise((r) => setTimeout(r, 50))
    expect(received).toBe(TOTAL)
    expect(ordered).toBe(true)
  }, 180_000)
})
