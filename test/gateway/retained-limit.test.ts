// The retained bound with the development defaults (no data folder: the broker state in memory,
// authentication off), as `npm start` runs the gateway. The same bound over broker.db, across a
// restart, is tried from outside in test/e2e/gateway-retained-flood.test.ts; below, over broker.db
// while another process holds its write lock.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import Database from 'better-sqlite3'
import mqtt, { type MqttClient } from 'mqtt'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { defaultGatewayConfig } from '../../gateway/config/gateway-config.js'
import { startGateway } from '../../gateway/index.js'
import { limitRetained } from '../../gateway/persistence/retained-limit.js'
import { createSqlitePersistence } from '../../gateway/persistence/sqlite-persistence.js'
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

describe('retained messages over broker.db when the disk refuses a write', () => {
  const cleanup = cleanupAfterEach()

  it('a retained message broker.db could not store (another process holds its write lock) is not counted, and one stored later is', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-retained-lock-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    const file = path.join(dir, 'broker.db')
    const persistence = createSqlitePersistence({ path: file })
    cleanup(() => persistence.destroy())
    const limit = await limitRetained(persistence, { maxTopics: 5, maxBytes: 0 })
    await persistence.storeRetained({ topic: 'kept/1', payload: Buffer.from('one'), retain: true, qos: 0 })
    expect(limit.stats()).toMatchObject({ topics: 1 })

    // Someone's sqlite3 shell holds the write lock: the commit gives up after its short busy wait.
    const other = new Database(file)
    other.prepare('BEGIN EXCLUSIVE').run()
    await expect(persistence.storeRetained({ topic: 'kept/2', payload: Buffer.from('two'), retain: true, qos: 0 })).rejects.toThrow()
    expect(limit.stats()).toMatchObject({ topics: 1, bytes: 'kept/1'.length + 3 })
    other.prepare('ROLLBACK').run()
    other.close()

    await persistence.storeRetained({ topic: 'kept/2', payload: Buffer.from('two'), retain: true, qos: 0 })
    expect(limit.stats()).toMatchObject({ topics: 2, bytes: 2 * ('kept/1'.length + 3), refused: 0 })
  })
})
