// aedes hands a client each message once, by the message's place in the broker's count: a
// message that reaches a client after one counted later is taken for a copy already sent
// (lib/client.js, dedupe) and dropped, and a persistent session loses it. Messages take
// different times to get through the broker (a retained one waits for its store), so a retained
// message published just before another could reach a subscriber after it and be lost. Through
// Outpost's broker every message reaches subscribers in the order it was counted.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import mqtt from 'mqtt'
import { describe, expect, it } from 'vitest'
import { startMqttBroker } from '../../gateway/broker/mqtt-broker.js'
import { createSqlitePersistence } from '../../gateway/persistence/sqlite-persistence.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { until } from '../helpers/wait.js'

describe('broker delivery order', () => {
  const cleanup = cleanupAfterEach()

  for (const acknowledgeAfterStore of [true, false]) {
    it(`delivers every message to a subscriber when retained and plain QoS 1 messages cross (PUBACK ${acknowledgeAfterStore ? 'after' : 'before'} the store)`, async () => {
      const dir = mkdtempSync(path.join(tmpdir(), 'outpost-order-'))
      cleanup(() => rmSync(dir, { recursive: true, force: true }))
      const persistence = createSqlitePersistence({ path: path.join(dir, 'broker.db') })
      const broker = await startMqttBroker({ port: 0, acknowledgeAfterStore, aedes: { persistence } })
      cleanup(async () => {
        await broker.close()
        await persistence.destroy()
      })
      const kept = new Set<string>()
      const plain = new Set<string>()
      const sub = await mqtt.connectAsync(broker.url, { clientId: 'order-sub', clean: false, reconnectPeriod: 0 })
      cleanup(() => sub.endAsync(true))
      sub.on('message', (_t, p) => void kept.add(p.toString()))
      await sub.subscribeAsync('order/#', { qos: 1 })
      const sub0 = await mqtt.connectAsync(broker.url, { clientId: 'order-sub-clean', reconnectPeriod: 0 })
      cleanup(() => sub0.endAsync(true))
      sub0.on('message', (_t, p) => void plain.add(p.toString()))
      await sub0.subscribeAsync('order/#', { qos: 1 })
      const retainer = await mqtt.connectAsync(broker.url, { clientId: 'order-retainer', reconnectPeriod: 0 })
      const talker = await mqtt.connectAsync(broker.url, { clientId: 'order-talker', reconnectPeriod: 0 })
      cleanup(() => retainer.endAsync(true))
      cleanup(() => talker.endAsync(true))
      const sent: string[] = []
      const acks: Promise<unknown>[] = []
      for (let round = 0; round < 200; round++) {
        // A retained status, then at once a plain message from another client.
        sent.push(`status-${round}`, `event-${round}`)
        acks.push(retainer.publishAsync(`order/dev-${round % 7}/status`, `status-${round}`, { qos: 1, retain: true }))
        acks.push(talker.publishAsync('order/events', `event-${round}`, { qos: 1 }))
      }
      await Promise.all(acks)
      const missing = (got: Set<string>): string[] => sent.filter((s) => !got.has(s))
      await until(() => missing(kept).length === 0 && missing(plain).length === 0, 20_000).catch(() => {
        throw new Error(`lost: persistent subscriber ${missing(kept).length} (${missing(kept).slice(0, 4).join(', ')}), clean subscriber ${missing(plain).length}`)
      })
      expect(kept.size).toBe(sent.length)
      expect(plain.size).toBe(sent.length)
    }, 60_000)
  }
})
