// Devices subscribing to many filters they may have. aedes hands the broker persistence all of a
// SUBSCRIBE's filters once per filter (n² rows): against broker.db, one packet of 3,200 filters
// from a persistent session blocked the gateway's event loop for 44 s (its own monitor timed out)
// and took 1.2 GB. And nothing bounded the filters a device holds: 150,000 distinct event filters
// (30 packets) took 350 MB and growing. Now a packet costs its size, and a device holds at most
// 1,000 filters.
import type { MqttClient } from 'mqtt'
import { afterEach, describe, expect, it } from 'vitest'
import { createEnvelopeCodec } from '../../runtime/wire/codec.js'
import { ENVELOPE_VERSION } from '../../runtime/wire/envelope.js'
import { until } from '../helpers/wait.js'
import { startGatewayProcess, type GatewayProcess } from './gateway-attack-process.js'

const codec = createEnvelopeCodec()
const event = (src: string, service: string, name: string): Uint8Array =>
  codec.encode({ v: ENVELOPE_VERSION, kind: 'event', id: `e-${name}`, src, inst: 'attack', at: Date.now(), service, version: '1', name, payload: { n: 1 } })

/** The SUBACK's return codes (MQTT.js rejects a SUBACK holding a refusal, with the packet). */
async function granted(c: MqttClient, filters: string | Record<string, { qos: 1 }>): Promise<number[]> {
  return c.subscribeAsync(filters as Record<string, { qos: 1 }>, { qos: 1 }).then(
    (g) => g.map((x) => x.qos),
    (err: { packet?: { granted: number[] } }) => {
      if (err.packet === undefined) throw err
      return err.packet.granted
    },
  )
}

describe('gateway under attack: one SUBSCRIBE with thousands of filters', () => {
  let gw: GatewayProcess | undefined
  const clients: MqttClient[] = []
  afterEach(async () => {
    for (const c of clients.splice(0)) c.end(true)
    await gw?.stop()
    gw = undefined
  })

  it('a persistent session subscribes 1,000 filters (its most) at once: SUBACK, the gateway keeps serving, its memory stays bounded, the filters are kept', async () => {
    gw = await startGatewayProcess({ devices: ['dev-a', 'dev-b'] })
    const rssBefore = gw.rssBytes()
    const a = await gw.connect('dev-a', { clean: false })
    clients.push(a)
    const filters: Record<string, { qos: 1 }> = {}
    for (let i = 0; i < 1_000; i++) filters[`ob/+/evt/flood/1/e${i}`] = { qos: 1 }
    let granted: number[] | undefined
    void a.subscribeAsync(filters).then((g) => (granted = g.map((x) => x.qos)), () => {})
    await until(() => granted !== undefined, 45_000)
    expect(granted).toHaveLength(1_000)
    expect(granted!.every((q) => q === 1)).toBe(true)
    expect(gw.alive()).toBe(true)
    expect((await gw.get('/readyz')).status).toBe(200)
    // About 100 kB of filters, not hundreds of MB.
    expect(gw.rssBytes() - rssBefore).toBeLessThan(64 * 2 ** 20)
    // The gateway's own client never lost its connection to a blocked event loop.
    expect(gw.lines.filter((l) => l.includes('keep alive timeout'))).toEqual([])

    // The session keeps them: away and back, dev-a gets an event that only the last filter matches.
    a.end(true)
    const back = await gw.connect('dev-a', { clean: false })
    clients.push(back)
    const got: string[] = []
    back.on('message', (topic) => got.push(topic))
    const b = await gw.connect('dev-b')
    clients.push(b)
    await b.publishAsync('ob/dev-b/evt/flood/1/e999', Buffer.from(event('dev-b', 'flood', 'e999')), { qos: 1 })
    await until(() => got.length > 0, 20_000)
    expect(got).toEqual(['ob/dev-b/evt/flood/1/e999'])
  }, 60_000)

  it('a device holds at most 1,000 filters: more are granted 0x80 and counted, the gateway stays small, an unsubscribe makes room', async () => {
    gw = await startGatewayProcess({ devices: ['dev-a'] })
    const rssBefore = gw.rssBytes()
    const a = await gw.connect('dev-a')
    clients.push(a)
    // The runtime's own subscriptions are a few; an attacker's are 60,000 distinct allowed filters.
    const codes: number[] = []
    for (let p = 0; p < 30; p++) {
      const filters: Record<string, { qos: 1 }> = {}
      for (let i = 0; i < 2_000; i++) filters[`ob/+/evt/flood/1/e${p * 2_000 + i}`] = { qos: 1 }
      codes.push(...(await granted(a, filters)))
    }
    expect(codes.filter((q) => q === 1)).toHaveLength(1_000)
    expect(codes.filter((q) => q === 128)).toHaveLength(59_000)
    expect(gw.rssBytes() - rssBefore).toBeLessThan(64 * 2 ** 20)
    // One it holds may be asked for again; after an unsubscribe, another one fits.
    expect(await granted(a, 'ob/+/evt/flood/1/e0')).toEqual([1])
    expect(await granted(a, 'ob/+/evt/flood/1/other')).toEqual([128])
    await a.unsubscribeAsync('ob/+/evt/flood/1/e0')
    expect(await granted(a, 'ob/+/evt/flood/1/other')).toEqual([1])
    const metrics = await (await gw.get('/metrics')).text()
    expect(metrics).toMatch(/^outpost_gateway_denied_total\{action="subscribe",reason="limit"\} 59001$/m)
    expect(gw.alive()).toBe(true)
  }, 60_000)
})
