// The broker under abuse: QoS 0 floods while subscribers are killed and come back, and
// subscribers that stop reading their socket. aedes 1.x with its own emitter died here with
// `RangeError: Maximum call stack size exceeded` inside mqemitter, and one subscriber that did not
// read stalled delivery to everyone; the gateway's broker must keep serving.
import type net from 'node:net'
import mqtt, { type MqttClient } from 'mqtt'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { startMqttBroker, type MqttBroker } from '../../gateway/broker/mqtt-broker.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { stuckSubscriber } from '../helpers/mqtt-packets.js'
import { until } from '../helpers/wait.js'

/** A publisher sending QoS 0 messages on `topic` as fast as its socket takes them, until stopped. */
function flood(url: string, clientId: string, topic: string): { stop(): Promise<void>; sent(): number } {
  let running = true
  let sent = 0
  let stop = (): void => undefined
  const stopped = new Promise<void>((r) => (stop = r))
  const payload = Buffer.alloc(16, 1)
  const done = (async () => {
    const c = await mqtt.connectAsync(url, { clientId, reconnectPeriod: 0 })
    while (running && c.connected) {
      for (let i = 0; i < 500; i++) c.publish(topic, payload, { qos: 0 })
      sent += 500
      // Let the socket empty before the next burst, or MQTT.js buffers without limit.
      // A stop does not wait for a drain that may be long in coming on a loaded machine.
      if (c.stream.writableLength > 1_000_000) await new Promise((r) => {
        c.stream.once('drain', r)
        stopped.then(r, r)
      })
      else await new Promise((r) => setImmediate(r))
    }
    await c.endAsync(true)
  })()
  return {
    async stop() {
      running = false
      stop()
      await done
    },
    sent: () => sent,
  }
}

/** Subscribes a fresh client and publishes to it at QoS 1: the broker still serves. */
async function stillServes(url: string, tag: string): Promise<void> {
  const c = await mqtt.connectAsync(url, { clientId: `fresh-${tag}`, reconnectPeriod: 0, connectTimeout: 10_000 })
  try {
    await c.subscribeAsync(`soak/check/${tag}`, { qos: 1 })
    const got = new Promise<string>((r) => c.once('message', (_t, p) => r(p.toString())))
    await c.publishAsync(`soak/check/${tag}`, `hello ${tag}`, { qos: 1 })
    expect(await got).toBe(`hello ${tag}`)
  } finally {
    await c.endAsync(true)
  }
}

describe('gateway broker under abuse', () => {
  const cleanup = cleanupAfterEach()
  // An error thrown from a broker callback (a timer, setImmediate) would kill a gateway process.
  const uncaught: unknown[] = []
  const onUncaught = (err: unknown): void => void uncaught.push(err)
  beforeEach(() => {
    uncaught.length = 0
    process.on('uncaughtException', onUncaught)
  })
  afterEach(() => void process.off('uncaughtException', onUncaught))

  const subscribers = async (broker: MqttBroker, n: number, topic: string, counts: number[]): Promise<MqttClient[]> => {
    const list: MqttClient[] = []
    for (let i = 0; i < n; i++) {
      // Reconnects on its own after being cut and subscribes again (MQTT.js resubscribes).
      const c = await mqtt.connectAsync(broker.url, { clientId: `sub-${i}`, reconnectPeriod: 100, connectTimeout: 10_000 })
      counts[i] = 0
      c.on('message', () => void counts[i]!++)
      c.on('error', () => {})
      await c.subscribeAsync(topic, { qos: 0 })
      list.push(c)
      cleanup(() => c.endAsync(true))
    }
    return list
  }

  it('keeps serving while subscribers are killed and reconnect in a QoS 0 flood, with stuck subscribers among them', async () => {
    const broker = await startMqttBroker({ port: 0 })
    cleanup(() => broker.close())
    const counts: number[] = []
    const subs = await subscribers(broker, 4, 'soak/t', counts)
    const floods = [0, 1, 2, 3].map((i) => flood(broker.url, `pub-${i}`, 'soak/t'))
    cleanup(() => Promise.all(floods.map((f) => f.stop())))
    const stuck: net.Socket[] = []
    cleanup(() => stuck.forEach((s) => s.destroy()))
    for (let round = 0; round < 8; round++) {
      // A subscriber that stops reading while the flood goes on, for a while.
      const s = await stuckSubscriber(broker.port, `stuck-${round}`, 'soak/t')
      stuck.push(s)
      await new Promise((r) => setTimeout(r, 1_000))
      // Every subscriber cut at once (no one left on the topic), then the stuck one.
      for (const c of subs) c.stream.destroy()
      await new Promise((r) => setTimeout(r, 50))
      s.destroy()
      await new Promise((r) => setTimeout(r, 300))
      expect(uncaught).toEqual([])
      // Cut one by one too, while the others receive.
      for (const c of subs) {
        c.stream.destroy()
        await new Promise((r) => setTimeout(r, 30))
      }
    }
    await Promise.all(floods.map((f) => f.stop()))
    expect(floods.every((f) => f.sent() > 0)).toBe(true)
    await stillServes(broker.url, 'after-flood')
    // The subscribers came back and receive again.
    await until(() => subs.every((c) => c.connected), 20_000)
    const before = counts.slice()
    const p = await mqtt.connectAsync(broker.url, { clientId: 'last-pub', reconnectPeriod: 0 })
    cleanup(() => p.endAsync(true))
    await until(() => {
      p.publish('soak/t', 'again', { qos: 0 })
      return counts.every((n, i) => n > before[i]!)
    }, 20_000)
    expect(uncaught).toEqual([])
  }, 90_000)

  it('a subscriber that stops reading does not stall delivery to the others', async () => {
    const broker = await startMqttBroker({ port: 0 })
    cleanup(() => broker.close())
    const counts: number[] = []
    await subscribers(broker, 2, 'soak/t', counts)
    const s = await stuckSubscriber(broker.port, 'stuck', 'soak/t')
    cleanup(() => s.destroy())
    const floods = [0, 1].map((i) => flood(broker.url, `pub-${i}`, 'soak/t'))
    cleanup(() => Promise.all(floods.map((f) => f.stop())))
    // The stuck subscriber's share is dropped once its queue is full (on a loaded machine the
    // floods take a while to fill it)...
    await until(() => broker.stats().droppedQos0 > 0, 60_000)
    // ...while the others keep receiving and a QoS 1 exchange goes through, the stuck one still connected.
    const before = counts.slice()
    await until(() => counts.every((n, i) => n > before[i]! + 1_000), 40_000)
    await stillServes(broker.url, 'beside-stuck')
    expect(s.destroyed).toBe(false)
    expect((broker.aedes as unknown as { clients: Record<string, unknown> }).clients['stuck']).toBeDefined()
    await Promise.all(floods.map((f) => f.stop()))
    expect(uncaught).toEqual([])
  }, 150_000)

  it('cuts off a persistent QoS 1 subscriber that stops reading, without holding back the others; it gets every message when it comes back', async () => {
    const broker = await startMqttBroker({ port: 0, maxQueuedBytes: 256 * 1024 })
    cleanup(() => broker.close())
    const counts: number[] = []
    await subscribers(broker, 1, 'soak/q1', counts)
    const s = await stuckSubscriber(broker.port, 'stuck-q1', 'soak/q1', { qos: 1, persistent: true })
    cleanup(() => s.destroy())
    await until(() => (broker.aedes as unknown as { clients: Record<string, unknown> }).clients['stuck-q1'] !== undefined, 10_000)
    const pub = await mqtt.connectAsync(broker.url, { clientId: 'pub-q1', reconnectPeriod: 0 })
    cleanup(() => pub.endAsync(true))
    // 16 MB of QoS 1 messages: more than the kernel's socket buffers hold for the stuck client.
    const total = 2_000
    const body = Buffer.alloc(8 * 1024, 7)
    const sent = new Set<number>()
    for (let i = 0; i < total; i++) {
      const payload = Buffer.concat([Buffer.from(String(i).padStart(6, '0')), body])
      await pub.publishAsync('soak/q1', payload, { qos: 1 })
      sent.add(i)
    }
    // Every publish was acknowledged (the publisher was not held back) and the other subscriber got them all.
    await until(() => counts[0] === total, 30_000)
    await until(() => broker.stats().slowClientsCut === 1, 30_000)
    await until(() => (broker.aedes as unknown as { clients: Record<string, unknown> }).clients['stuck-q1'] === undefined, 10_000)
    // Back with its session: what it did not take is sent again.
    const back = mqtt.connect(broker.url, { clientId: 'stuck-q1', clean: false, reconnectPeriod: 0 })
    cleanup(() => back.endAsync(true))
    const got = new Set<number>()
    back.on('message', (_t, p) => void got.add(Number(p.subarray(0, 6).toString())))
    await until(() => got.size === total, 30_000)
    expect([...got].every((n) => sent.has(n))).toBe(true)
    expect(uncaught).toEqual([])
  }, 60_000)
})
