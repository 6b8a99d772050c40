// The retained bound with the development defaults (no data folder: the broker state in memory,
// authentication off), as `npm start` runs the gateway. The same bound over broker.db, across a
// restart, is tried from outside in test/e2e/gateway-retained-flood.test.ts.
import mqtt, { type MqttClient } from 'mqtt'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { defaultGatewayConfig } from '../../gateway/config/gateway-config.js'
import { startGateway } from '../../gateway/index.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'

describe('retained messages with the broker state in memory', () => {
  const cleanup = cleanupAfterEach()

  const client = async (url: string, id: string): Promise<MqttClient> => {
    const c = await mqtt.connectAsync(url, { clientId: id, reconnectPeriod: 0 })
    cleanup(() => c.endAsync(true))
    return c
  }
  const retainedUnder = async (url: string, filter: string): Promise<string[]> => {
    const c = await client(url, `reader-${filter.length}-${Math.random().toString(36).slice(2)}`)
    const got: string[] = []
    c.on('message', (topic, _payload, packet) => {
      if (packet.retain) got.push(topic)
    })
    await c.subscribeAsync(filter, { qos: 1 })
    await c.publishAsync('probe/done', 'x', { qos: 1 })
    await new Promise((r) => setTimeout(r, 200))
    return got.sort()
  }

  it('keeps at most retainedMaxTopics topics; replacing a kept one and clearing always go through', async () => {
    const config = defaultGatewayConfig()
    expect(config.persistence).toBe('memory')
    expect(config.auth.enabled).toBe(false)
    config.mqtt.retainedMaxTopics = 10
    const gw = await startGateway({ config, port: 0, logger: pino({ level: 'silent' }) })
    cleanup(() => gw.close())
    const own = (await retainedUnder(gw.broker.url, '#')).length // the gateway's own presence and contract
    expect(own).toBeGreaterThanOrEqual(1)

    const c = await client(gw.broker.url, 'flooder')
    for (let i = 0; i < 30; i++) await c.publishAsync(`junk/${i}`, `v${i}`, { qos: 1, retain: true })
    const kept = Array.from({ length: 10 - own }, (_, i) => `junk/${i}`).sort()
    expect(await retainedUnder(gw.broker.url, 'junk/#')).toEqual(kept)

    // A kept topic takes a new value; a cleared one makes room for one new topic.
    await c.publishAsync('junk/0', 'changed', { qos: 1, retain: true })
    await c.publishAsync('junk/1', '', { qos: 1, retain: true })
    await c.publishAsync('junk/100', 'new', { qos: 1, retain: true })
    await c.publishAsync('junk/101', 'refused', { qos: 1, retain: true })
    const now = await retainedUnder(gw.broker.url, 'junk/#')
    expect(now).toContain('junk/0')
    expect(now).not.toContain('junk/1')
    expect(now).toContain('junk/100')
    expect(now).not.toContain('junk/101')
    expect(now).toHaveLength(10 - own)
  })
})
