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
import net from 'node:net'
import { mqttPacket, mqttString, nextPacket, stuckSubscriber } from '../helpers/mqtt-packets.js'
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

/**
 * A QoS 1 subscriber that reads `bytesPerSecond` at most (it pauses its socket after each chunk for
 * as long as the chunk is worth) and acknowledges every message it reads; how many it got.
 */
async function slowReader(port: number, clientId: string, topic: string, bytesPerSecond: number): Promise<{ got(): number; socket: net.Socket }> {
  const socket = net.connect(port, '127.0.0.1')
  await new Promise<void>((r, j) => socket.once('connect', r).once('error', j))
  socket.on('error', () => {})
  socket.write(Buffer.concat([
    mqttPacket(0x10, Buffer.concat([mqttString('MQTT'), Buffer.from([4, 0x02, 0, 60]), mqttString(clientId)])),
    mqttPacket(0x82, Buffer.concat([Buffer.from([0, 1]), mqttString(topic), Buffer.from([1])])),
  ]))
  let got = 0
  let buf: Buffer = Buffer.alloc(0)
  socket.on('data', (chunk: Buffer) => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
    const acks: Buffer[] = []
    for (let p = nextPacket(buf); p !== undefined; p = nextPacket(buf)) {
      buf = p.rest
      if (p.first >> 4 !== 3) continue
      got++
      // QoS 1: the packet id follows the topic.
      if (((p.first >> 1) & 3) === 1) acks.push(mqttPacket(0x40, p.body.subarray(2 + p.body.readUInt16BE(0), 4 + p.body.readUInt16BE(0))))
    }
    if (acks.length > 0) socket.write(Buffer.concat(acks))
    socket.pause()
    setTimeout(() => socket.resume(), (chunk.length / bytesPerSecond) * 1000)
  })
  return { got: () => got, socket }
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
  it('a subscriber that reads slowly but steadily is not cut, however long the flow holds its publisher back', async () => {
    const broker = await startMqttBroker({ port: 0, stallMs: 2_000 })
    cleanup(() => broker.close())
    // 40 KB/s: the send buffer, once full, shows room again only when about half of it is free
    // (megabytes on loopback), so for a while only its PUBACKs show that it reads.
    const slow = await slowReader(broker.port, 'slow-reader', 'stall/t', 40_000)
    cleanup(() => slow.socket.destroy())
    const clients = (): Record<string, unknown> => (broker.aedes as unknown as { clients: Record<string, unknown> }).clients
    await until(() => clients()['slow-reader'] !== undefined, 10_000)
    const pub = await mqtt.connectAsync(broker.url, { clientId: 'pub-slow', reconnectPeriod: 0 })
    cleanup(() => pub.endAsync(true))
    // Held back by the slow reader (by design): it publishes what it can in 12 s.
    await publishWindowed(pub, 'stall/t', 100_000, 50, 400, 12_000)
    expect(broker.stats().slowClientsCut).toBe(0)
    expect(slow.socket.destroyed).toBe(false)
    const before = slow.got()
    await until(() => slow.got() > before, 10_000)
  }, 60_000)
  it('a burst to subscribers that read goes out whole: QoS 0 from one publisher, QoS 1 from many at once', async () => {
    const broker = await startMqttBroker({ port: 0, stallMs: 2_000 })
    cleanup(() => broker.close())
    const sub = await mqtt.connectAsync(broker.url, { clientId: 'burst-sub', reconnectPeriod: 0 })
    cleanup(() => sub.endAsync(true))
    let q0 = 0
    let q1 = 0
    sub.on('message', (topic) => void (topic === 'burst/q0' ? q0++ : q1++))
    await sub.subscribeAsync(['burst/q0', 'burst/q1'], { qos: 1 })
    const pub = await mqtt.connectAsync(broker.url, { clientId: 'burst-pub', reconnectPeriod: 0 })
    cleanup(() => pub.endAsync(true))
    // Counting what one turn lets through against the socket's 16 KiB mark, whatever waited in
    // the socket, dropped three quarters of this burst and cut a subscriber that read everything.
    for (let i = 0; i < 1_000; i++) pub.publish('burst/q0', Buffer.alloc(300, 1), { qos: 0 })
    await until(() => q0 === 1_000, 20_000)
    const many = await Promise.all(Array.from({ length: 60 }, (_, i) => mqtt.connectAsync(broker.url, { clientId: `burst-pub-${i}`, reconnectPeriod: 0 })))
    cleanup(() => Promise.all(many.map((c) => c.endAsync(true))))
    await Promise.all(many.map((c) => c.publishAsync('burst/q1', Buffer.alloc(30_000, 2), { qos: 1 })))
    await until(() => q1 === 60, 20_000)
    expect(broker.stats()).toMatchObject({ slowClientsCut: 0, droppedQos0: 0 })
  }, 60_000)
  it('a subscriber that never reads but keeps sending PINGREQs is cut all the same', async () => {
    const broker = await startMqttBroker({ port: 0, stallMs: 1_000 })
    cleanup(() => broker.close())
    const clients = (): Record<string, unknown> => (broker.aedes as unknown as { clients: Record<string, unknown> }).clients
    const s = await stuckSubscriber(broker.port, 'chatty-stuck', 'stall/t', { qos: 1 })
    cleanup(() => s.destroy())
    const ping = setInterval(() => s.writable && s.write(Buffer.from([0xc0, 0])), 200)
    cleanup(() => clearInterval(ping))
    await until(() => clients()['chatty-stuck'] !== undefined, 10_000)
    const pub = await mqtt.connectAsync(broker.url, { clientId: 'pub-chatty', reconnectPeriod: 0 })
    cleanup(() => pub.endAsync(true))
    const { acked } = await publishWindowed(pub, 'stall/t', 20_000, 10, 400, 50_000)
    // Bytes it sends do not show that it reads: taken for progress, they held the publisher 60 s.
    expect(acked).toBe(20_000)
    expect(broker.stats().slowClientsCut).toBe(1)
  }, 120_000)
})
