// An attacker floods a real gateway process (`outpost gateway --config`, authentication off, so a
// plain MQTT.js client may retain on any topic) with retained messages on ever new topics. Each
// retained message is kept in memory and in broker.db until cleared: before the bound, the
// gateway grew with every one. Now it keeps at most mqtt.retainedMaxTopics topics and
// mqtt.retainedMaxBytes bytes; what does not fit is delivered to the subscribers of the moment
// and not kept, a message that would grow a kept one past the bytes clears it, and clearing a
// topic makes room. The bound holds across a restart (the counts are read from broker.db).
import type { ChildProcess } from 'node:child_process'
import mqtt, { type MqttClient } from 'mqtt'
import { describe, expect, it } from 'vitest'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { startGatewayCli } from '../helpers/gateway-cli.js'
import { until } from '../helpers/wait.js'
import { HTTP_TOKEN, startGatewayProcess } from './gateway-attack-process.js'

const MAX_TOPICS = 100
const MAX_BYTES = 150_000

function valueOf(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `))
  return line === undefined ? Number.NaN : Number(line.slice(series.length + 1))
}

describe('a gateway flooded with retained messages (authentication off)', () => {
  const cleanup = cleanupAfterEach()

  const connect = (url: string, id: string): Promise<MqttClient> =>
    new Promise((resolve, reject) => {
      const c = mqtt.connect(url, { clientId: id, reconnectPeriod: 0, connectTimeout: 20_000 })
      c.once('connect', () => resolve(c))
      c.once('error', reject)
      cleanup(() => c.endAsync(true))
    })

  /** The retained messages a new subscriber to `filter` gets, by topic (the bytes of each). */
  async function retainedOf(url: string, filter: string): Promise<Map<string, number>> {
    const c = await connect(url, `reader-${Math.random().toString(36).slice(2)}`)
    const got = new Map<string, number>()
    c.on('message', (topic, payload, packet) => {
      if (packet.retain) got.set(topic, payload.length)
    })
    await c.subscribeAsync(filter, { qos: 1 })
    // Retained messages come right after the SUBACK; a round trip through the broker says they are all in.
    await c.publishAsync('probe/done', 'x', { qos: 1 })
    await new Promise((r) => setTimeout(r, 300))
    await c.endAsync()
    return got
  }

  it('keeps at most the configured retained topics and bytes, still delivers what it does not keep, frees room on a clear, and keeps the bound across a restart', async () => {
    const gw = await startGatewayProcess({ extra: 'auth: { enabled: false }\n', mqtt: `retainedMaxTopics: ${MAX_TOPICS}, retainedMaxBytes: ${MAX_BYTES}` })
    cleanup(() => gw.stop())
    const metrics = async (get = gw.get): Promise<string> => (await get('/metrics')).text()
    const before = await metrics()
    // The gateway's own presence and contract are retained already.
    const own = valueOf(before, 'outpost_gateway_retained_messages')
    expect(own).toBeGreaterThanOrEqual(1)
    expect(own).toBeLessThan(10)
    expect(valueOf(before, 'outpost_gateway_retained_bytes')).toBeLessThan(15_000) // so that two 60 kB messages fit below and a third does not

    // A live subscriber sees every message of the flood, kept or not.
    const live = await connect(gw.mqttUrl, 'live')
    let delivered = 0
    live.on('message', (topic) => {
      if (topic.startsWith('junk/')) delivered++
    })
    await live.subscribeAsync('junk/#', { qos: 1 })

    const attacker = await connect(gw.mqttUrl, 'attacker')
    const FLOOD = 1_000
    for (let i = 0; i < FLOOD; i += 100) {
      await Promise.all(Array.from({ length: 100 }, (_, k) => attacker.publishAsync(`junk/${i + k}`, Buffer.alloc(100, 7), { qos: 1, retain: true })))
    }
    await until(() => delivered === FLOOD, 20_000)

    const kept = MAX_TOPICS - own
    let text = await metrics()
    expect(valueOf(text, 'outpost_gateway_retained_messages')).toBe(MAX_TOPICS)
    expect(valueOf(text, 'outpost_gateway_retained_refused_total')).toBe(FLOOD - kept)
    const stored = await retainedOf(gw.mqttUrl, 'junk/#')
    expect(stored.size).toBe(kept)
    expect([...stored.keys()].sort()).toEqual(Array.from({ length: kept }, (_, i) => `junk/${i}`).sort())

    // Bytes: kept topics grow until the next one would pass the bound; that one is cleared, not left stale.
    const big = Buffer.alloc(60_000, 9)
    for (const i of [0, 1, 2]) await attacker.publishAsync(`junk/${i}`, big, { qos: 1, retain: true })
    text = await metrics()
    expect(valueOf(text, 'outpost_gateway_retained_bytes')).toBeLessThanOrEqual(MAX_BYTES)
    const afterBig = await retainedOf(gw.mqttUrl, 'junk/#')
    expect(afterBig.get('junk/0')).toBe(60_000)
    expect(afterBig.get('junk/1')).toBe(60_000)
    expect(afterBig.has('junk/2')).toBe(false) // it held 100 bytes; 60 kB more did not fit, so it was cleared
    expect(valueOf(text, 'outpost_gateway_retained_messages')).toBe(MAX_TOPICS - 1)
    expect(valueOf(text, 'outpost_gateway_retained_refused_total')).toBe(FLOOD - kept + 1)

    // Room again: a clear (and the topic cleared above) lets new topics in.
    await attacker.publishAsync('junk/5', Buffer.alloc(0), { qos: 1, retain: true })
    await attacker.publishAsync('fresh/1', 'one', { qos: 1, retain: true })
    await attacker.publishAsync('fresh/2', 'two', { qos: 1, retain: true })
    await attacker.publishAsync('fresh/3', 'three', { qos: 1, retain: true })
    const fresh = await retainedOf(gw.mqttUrl, 'fresh/#')
    expect([...fresh.keys()].sort()).toEqual(['fresh/1', 'fresh/2'])
    expect(gw.alive()).toBe(true)
    // One log line for the whole flood (at most one a minute).
    expect(gw.lines.filter((l) => l.includes('retained message not kept')).length).toBe(1)

    // Restarted (SIGTERM): the counts come back from broker.db, and the bound still holds.
    await attacker.endAsync()
    await live.endAsync()
    gw.child.kill('SIGTERM')
    await until(() => !gw.alive(), 15_000)
    const lines: string[] = []
    const again = await startGatewayCli(gw.configFile, lines)
    let second: ChildProcess | undefined = again.child
    cleanup(() => {
      if (!again.exited()) second?.kill('SIGKILL')
      second = undefined
    })
    const get = (route: string): Promise<Response> => fetch(again.http + route, { headers: { authorization: `Bearer ${HTTP_TOKEN}` } })
    text = await metrics(get)
    expect(valueOf(text, 'outpost_gateway_retained_messages')).toBe(MAX_TOPICS)
    const c = await connect(again.url, 'after-restart')
    await c.publishAsync('fresh/4', 'four', { qos: 1, retain: true })
    expect((await retainedOf(again.url, 'fresh/#')).has('fresh/4')).toBe(false)
    expect(valueOf(await metrics(get), 'outpost_gateway_retained_refused_total')).toBe(1)
    again.child.kill('SIGTERM')
    await until(() => again.exited(), 15_000)
  })
})
