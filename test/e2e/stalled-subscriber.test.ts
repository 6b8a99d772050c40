// A subscriber whose socket stops taking bytes while less than `maxQueuedBytes` wait for it. aedes
// waits for a full socket to drain before it finishes a delivery, and reads the publisher's next
// packets only once its packets in hand are delivered: with a few QoS 1 publishes in flight the
// publisher stood still, so nothing more was queued for the stuck client, the 1 MiB cut was never
// reached, and the publisher and every other subscriber of it waited for aedes' drainTimeout
// (60 s). Found from outside against the gateway process (helper-98).
import mqtt from 'mqtt'
import { describe, expect, it } from 'vitest'
import { startMqttBroker } from '../../gateway/broker/mqtt-broker.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { stuckSubscriber } from '../helpers/mqtt-packets.js'
import { until } from '../helpers/wait.js'

/** Publishes `total` QoS 1 messages with `window` unacknowledged at a time; the longest wait between two PUBACKs. */
async function publishWindowed(client: mqtt.MqttClient, topic: string, total: number, window: number, bytes: number, budgetMs: number): Promise<{ acked: number; longestGapMs: number }> {
  const body = Buffer.alloc(bytes, 7)
  let sent = 0
  let acked = 0
  let longestGapMs = 0
  let last = Date.now()
  const started = last
  await new Promise<void>((resolve) => {
    const next = (): void => {
      if (acked === total || Date.now() - started > budgetMs) return resolve()
      while (sent < total && sent - acked < window) {
        const i = sent++
        client.publish(topic, Buffer.concat([Buffer.from(String(i).padStart(6, '0')), body]), { qos: 1 }, () => {
          const now = Date.now()
          longestGapMs = Math.max(longestGapMs, now - last)
          last = now
          acked++
          next()
        })
      }
    }
    next()
    // A publisher held for good gets no callback at all: look at the budget from outside too.
    const watch = setInterval(() => {
      if (Date.now() - started > budgetMs) {
        clearInterval(watch)
        longestGapMs = Math.max(longestGapMs, Date.now() - last)
        resolve()
      }
      if (acked === total) clearInterval(watch)
    }, 250)
  })
  return { acked, longestGapMs }
}

describe('a subscriber whose socket takes no bytes', () => {
  const cleanup = cleanupAfterEach()

  for (const persistent of [false, true]) {
    it(`is cut after stallMs without progress, and its publisher goes on (${persistent ? 'persistent' : 'clean'} session)`, async () => {
      const broker = await startMqttBroker({ port: 0, stallMs: 1_000 })
      cleanup(() => broker.close())
      const clients = (): Record<string, unknown> => (broker.aedes as unknown as { clients: Record<string, unknown> }).clients
      const s = await stuckSubscriber(broker.port, 'stuck-stall', 'stall/t', { qos: 1, persistent })
      cleanup(() => s.destroy())
      await until(() => clients()['stuck-stall'] !== undefined, 10_000)
      const other = await mqtt.connectAsync(broker.url, { clientId: 'other-sub', reconnectPeriod: 0 })
      cleanup(() => other.endAsync(true))
      let otherGot = 0
      other.on('message', () => void otherGot++)
      await other.subscribeAsync('stall/t', { qos: 1 })
      const pub = await mqtt.connectAsync(broker.url, { clientId: 'pub-stall', reconnectPeriod: 0 })
      cleanup(() => pub.endAsync(true))
      // 8 MB in 400-byte messages, ten in flight: more than the kernel holds for the stuck
      // client on loopback (the hold began after 2-3 MB).
      const total = 20_000
      const { acked, longestGapMs } = await publishWindowed(pub, 'stall/t', total, 10, 400, 50_000)
      // Held, the publisher got no PUBACK for aedes' 60 s.
      expect({ acked, heldForAMinute: longestGapMs >= 50_000 }).toEqual({ acked: total, heldForAMinute: false })
      await until(() => otherGot === total, 30_000)
      expect(broker.stats().slowClientsCut).toBeGreaterThanOrEqual(1)
      expect(s.destroyed || s.readableEnded || clients()['stuck-stall'] === undefined).toBe(true)
      if (!persistent) return
      // Back with its session: every message, those it never took included.
      s.destroy()
      await until(() => clients()['stuck-stall'] === undefined, 10_000)
      const back = mqtt.connect(broker.url, { clientId: 'stuck-stall', clean: false, reconnectPeriod: 0 })
      cleanup(() => back.endAsync(true))
      const got = new Set<number>()
      back.on('message', (_t, p) => void got.add(Number(p.subarray(0, 6).toString())))
      await until(() => got.size === total, 60_000)
    }, 180_000)
  }
})
