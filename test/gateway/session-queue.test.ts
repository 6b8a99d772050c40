// A persistent session that stays away has a bounded queue: beyond `sessionMaxMessages` (or
// `sessionMaxBytes`) new messages for it are not kept, counted, logged once a while; the
// publisher and every other client go on, and the session gets what was kept when it returns.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import mqtt from 'mqtt'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { startMqttBroker } from '../../gateway/broker/mqtt-broker.js'
import { createSqlitePersistence, type SqlitePersistence } from '../../gateway/persistence/sqlite-persistence.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { until } from '../helpers/wait.js'

describe('queues of persistent sessions', () => {
  const cleanup = cleanupAfterEach()

  const start = async (opts: { maxQueuedMessages?: number; maxQueuedBytes?: number; maxTotalQueuedBytes?: number }) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-session-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    const lines: { msg: string; clientId?: string }[] = []
    const log = pino({ level: 'warn' }, { write: (l: string) => void lines.push(JSON.parse(l)) })
    const open = (): SqlitePersistence => createSqlitePersistence({ path: path.join(dir, 'broker.db'), log, ...opts })
    let persistence = open()
    let broker = await startMqttBroker({ port: 0, aedes: { persistence } })
    cleanup(async () => {
      await broker.close()
      await persistence.destroy()
    })
    return {
      lines,
      persistence: () => persistence,
      url: () => broker.url,
      /** The broker stopped and started again on the same broker.db. */
      restart: async () => {
        await broker.close()
        await persistence.destroy()
        persistence = open()
        broker = await startMqttBroker({ port: 0, aedes: { persistence } })
      },
    }
  }

  const away = async (url: string, clientId: string): Promise<void> => {
    const c = await mqtt.connectAsync(url, { clientId, clean: false, reconnectPeriod: 0 })
    await c.subscribeAsync('q/#', { qos: 1 })
    await c.endAsync()
  }

  const collect = async (url: string, clientId: string, expected: number): Promise<string[]> => {
    const got: string[] = []
    const c = mqtt.connect(url, { clientId, clean: false, reconnectPeriod: 0 })
    cleanup(() => c.endAsync(true))
    c.on('message', (_t, p) => void got.push(p.toString()))
    await until(() => got.length >= expected, 20_000)
    // Nothing more comes.
    await new Promise((r) => setTimeout(r, 300))
    return got
  }

  it('keeps the first sessionMaxMessages for a session that is away, drops the rest with a count and one log line, and the publisher is not held back', async () => {
    const gw = await start({ maxQueuedMessages: 100 })
    await away(gw.url(), 'away-1')
    const other = await mqtt.connectAsync(gw.url(), { clientId: 'present', clean: false, reconnectPeriod: 0 })
    cleanup(() => other.endAsync(true))
    const live: string[] = []
    other.on('message', (_t, p) => void live.push(p.toString()))
    await other.subscribeAsync('q/#', { qos: 1 })
    const pub = await mqtt.connectAsync(gw.url(), { clientId: 'pub', reconnectPeriod: 0 })
    cleanup(() => pub.endAsync(true))
    for (let i = 0; i < 250; i++) await pub.publishAsync('q/1', `m-${i}`, { qos: 1 })
    // A client that reads gets all of them.
    await until(() => live.length === 250, 20_000)
    expect(gw.persistence().stats()).toMatchObject({ queued: 100, dropped: 150 })
    expect(gw.lines.filter((l) => l.clientId === 'away-1' && /queue of a client is full/.test(l.msg))).toHaveLength(1)
    // Kept across a restart, and the session gets the first 100 when it comes back.
    await gw.restart()
    expect(gw.persistence().stats().queued).toBe(100)
    const got = await collect(gw.url(), 'away-1', 100)
    expect(got).toEqual(Array.from({ length: 100 }, (_, i) => `m-${i}`))
    await until(() => gw.persistence().stats().queued === 0, 10_000)
    // With room again, it is queued for again.
    await away(gw.url(), 'away-1')
    await pub.endAsync(true).catch(() => {})
    const pub2 = await mqtt.connectAsync(gw.url(), { clientId: 'pub-2', reconnectPeriod: 0 })
    cleanup(() => pub2.endAsync(true))
    await pub2.publishAsync('q/1', 'after', { qos: 1 })
    expect(await collect(gw.url(), 'away-1', 1)).toEqual(['after'])
  }, 60_000)

  it('bounds the bytes queued for one session too (sessionMaxBytes)', async () => {
    const gw = await start({ maxQueuedBytes: 64 * 1024 })
    await away(gw.url(), 'away-2')
    const pub = await mqtt.connectAsync(gw.url(), { clientId: 'pub', reconnectPeriod: 0 })
    cleanup(() => pub.endAsync(true))
    const body = Buffer.alloc(10 * 1024, 1)
    for (let i = 0; i < 20; i++) await pub.publishAsync('q/big', Buffer.concat([Buffer.from(`${String(i).padStart(2, '0')}:`), body]), { qos: 1 })
    const stats = gw.persistence().stats()
    // Six of about 10 KiB fit in 64 KiB.
    expect(stats.queued).toBe(6)
    expect(stats.dropped).toBe(14)
    expect(stats.queuedBytes).toBeLessThanOrEqual(64 * 1024)
    const got = await collect(gw.url(), 'away-2', 6)
    expect(got.map((g) => g.slice(0, 2))).toEqual(['00', '01', '02', '03', '04', '05'])
  }, 60_000)

  it('bounds the bytes queued over all sessions together (sessionsMaxBytes): each keeps a copy of its own', async () => {
    const gw = await start({ maxTotalQueuedBytes: 64 * 1024 })
    for (const id of ['away-a', 'away-b', 'away-c', 'away-d']) await away(gw.url(), id)
    const pub = await mqtt.connectAsync(gw.url(), { clientId: 'pub', reconnectPeriod: 0 })
    cleanup(() => pub.endAsync(true))
    const body = Buffer.alloc(4 * 1024, 1)
    for (let i = 0; i < 10; i++) await pub.publishAsync('q/big', Buffer.concat([Buffer.from(`${String(i).padStart(2, '0')}:`), body]), { qos: 1 })
    const stats = gw.persistence().stats()
    // 15 copies of about 4 KiB fit in 64 KiB, of the 40 that four sessions would keep.
    expect(stats.queuedBytes).toBeLessThanOrEqual(64 * 1024)
    expect(stats.queued).toBe(15)
    expect(stats.dropped).toBe(25)
    expect(gw.lines.some((l) => l.msg.startsWith('the queues of all clients together are full'))).toBe(true)
    // The first come first: the sessions that were first for each message have it.
    const got = await collect(gw.url(), 'away-a', 4)
    expect(got.map((g) => g.slice(0, 2))).toEqual(['00', '01', '02', '03'])
  }, 60_000)
})
