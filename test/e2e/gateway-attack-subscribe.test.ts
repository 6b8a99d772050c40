// A device with a persistent session sends one SUBSCRIBE with thousands of filters it may have.
// aedes hands the broker persistence all of a packet's filters once per filter (n² rows): against
// broker.db, 3,200 filters blocked the gateway's event loop for 44 s (its own monitor timed out)
// and took 1.2 GB. The gateway stays responsive and small, and the session keeps every filter.
import type { MqttClient } from 'mqtt'
import { afterEach, describe, expect, it } from 'vitest'
import { createEnvelopeCodec } from '../../runtime/wire/codec.js'
import { ENVELOPE_VERSION } from '../../runtime/wire/envelope.js'
import { until } from '../helpers/wait.js'
import { startGatewayProcess, type GatewayProcess } from './gateway-attack-process.js'

const codec = createEnvelopeCodec()
const event = (src: string, service: string, name: string): Uint8Array =>
  codec.encode({ v: ENVELOPE_VERSION, kind: 'event', id: `e-${name}`, src, inst: 'attack', at: Date.now(), service, version: '1', name, payload: { n: 1 } })

describe('gateway under attack: one SUBSCRIBE with thousands of filters', () => {
  let gw: GatewayProcess | undefined
  const clients: MqttClient[] = []
  afterEach(async () => {
    for (const c of clients.splice(0)) c.end(true)
    await gw?.stop()
    gw = undefined
  })

  it('a persistent session subscribes 5,000 filters at once: SUBACK, the gateway keeps serving, its memory stays bounded, the filters are kept', async () => {
    gw = await startGatewayProcess({ devices: ['dev-a', 'dev-b'] })
    const rssBefore = gw.rssBytes()
    const a = await gw.connect('dev-a', { clean: false })
    clients.push(a)
    const filters: Record<string, { qos: 1 }> = {}
    for (let i = 0; i < 5_000; i++) filters[`ob/+/evt/flood/1/e${i}`] = { qos: 1 }
    let granted: number[] | undefined
    void a.subscribeAsync(filters).then((g) => (granted = g.map((x) => x.qos)), () => {})
    await until(() => granted !== undefined, 45_000)
    expect(granted).toHaveLength(5_000)
    expect(granted!.every((q) => q === 1)).toBe(true)
    expect(gw.alive()).toBe(true)
    expect((await gw.get('/readyz')).status).toBe(200)
    // A few hundred kB of filters, not gigabytes.
    expect(gw.rssBytes() - rssBefore).toBeLessThan(200 * 2 ** 20)
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
    await b.publishAsync('ob/dev-b/evt/flood/1/e4999', Buffer.from(event('dev-b', 'flood', 'e4999')), { qos: 1 })
    await until(() => got.length > 0, 20_000)
    expect(got).toEqual(['ob/dev-b/evt/flood/1/e4999'])
  }, 60_000)
})
