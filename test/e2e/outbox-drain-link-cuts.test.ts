// Outside test (issue 12, direct publisher): a SQLite outbox backlog of 40,000 entries drains over
// the MQTT transport's own QoS 1 publishes (callerResends) while the link is cut mid-write by a
// TCP proxy and the broker is stopped and started again. A plain mqtt.js subscriber counts: every
// entry arrives at least once, first arrivals in seq order, and the outbox ends empty.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import mqtt from 'mqtt'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { startMqttBroker, type MqttBroker } from '../../gateway/broker/mqtt-broker.js'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createOutboxPump } from '../../runtime/outbox/outbox-pump.js'
import { createSqliteOutbox, openDeviceDatabase } from '../../runtime/stores/sqlite/index.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { tcpProxy } from '../helpers/tcp-proxy.js'
import { until } from '../helpers/wait.js'

const TOTAL = 40_000

describe('outbox drain with the link cut and the broker restarted', () => {
  const cleanup = cleanupAfterEach()

  it('delivers every entry at least once, first arrivals in order, none lost', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-cuts-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    let broker: MqttBroker = await startMqttBroker({ port: 0 })
    const brokerPort = broker.port
    cleanup(() => broker.close())
    const proxy = await tcpProxy(broker.url)
    cleanup(() => proxy.close())

    // The counting subscriber connects to the broker directly (never cut), persistent session.
    const seen: number[] = []
    const sub = await mqtt.connectAsync(broker.url, { clientId: 'counter', clean: false, reconnectPeriod: 100 })
    cleanup(() => sub.endAsync(true))
    sub.on('message', (_t, buf) => seen.push(Number(buf.toString('utf8'))))
    await sub.subscribeAsync('cuts/dev/#', { qos: 1 })

    // The backlog: written while no pump runs.
    const db = openDeviceDatabase({ path: path.join(dir, 'dev.db') })
    cleanup(() => db.close())
    const outbox = createSqliteOutbox(db)
    db.db.transaction(() => {
      for (let i = 1; i <= TOTAL; i++) outbox.append({ stream: 'events', topic: 'cuts/dev/e', frame: Buffer.from(String(i)), retain: false })
    })()
    expect(outbox.stats().entries).toBe(TOTAL)

    const bridge = createMqttBridge({ url: proxy.url, deviceId: 'cuts-dev', reconnect: { initialMs: 20, maxMs: 100 } })
    cleanup(() => bridge.close({ drainMs: 100 }))
    const pump = createOutboxPump({ outbox, bridge, log: pino({ level: 'silent' }) })
    cleanup(() => pump.stop(100))
    await bridge.connect()

    const unique = (): number => new Set(seen).size
    // Nine cuts of the link mid-drain.
    let connects = 0
    bridge.onStatus((st) => void (st.type === 'connected' && connects++))
    for (const at of [2_000, 4_000, 6_000, 8_000, 10_000, 12_000, 14_000, 16_000, 18_000]) {
      await until(() => unique() >= at, 20_000)
      proxy.cut()
      await until(() => bridge.status.type === 'connected', 10_000)
    }
    // The broker goes away and comes back twice (a new aedes on the same port, the proxy's target).
    // The device loses its link first and the counter is let to receive what the old broker
    // acknowledged; the device gets through again only once the counter subscribed to the new one.
    for (const at of [22_000, 30_000]) {
      await until(() => unique() >= at, 20_000)
      await proxy.down()
      const before = seen.length
      await new Promise((r) => setTimeout(r, 300))
      expect(seen.length).toBeGreaterThanOrEqual(before)
      await broker.close()
      broker = await startMqttBroker({ port: brokerPort })
      await until(() => sub.connected, 10_000)
      await sub.subscribeAsync('cuts/dev/#', { qos: 1 })
      await proxy.up()
      await until(() => bridge.status.type === 'connected', 10_000)
    }
    await until(() => outbox.stats().entries === 0, 40_000)
    await until(() => unique() === TOTAL, 10_000).catch(() => {})
    expect(seen.length).toBeGreaterThanOrEqual(TOTAL)

    const got = new Set(seen)
    const missing: number[] = []
    for (let i = 1; i <= TOTAL; i++) if (!got.has(i)) missing.push(i)
    // First arrivals in seq order.
    const firsts: number[] = []
    const had = new Set<number>()
    for (const n of seen) if (!had.has(n)) (had.add(n), firsts.push(n))
    const outOfOrder = firsts.filter((n, i) => i > 0 && n < firsts[i - 1]!)
    expect(outOfOrder).toEqual([])
    expect(missing.length, `missing: ${missing.slice(0, 20).join(',')}`).toBe(0)
    expect(outbox.stats().entries).toBe(0)
    expect(connects).toBeGreaterThanOrEqual(11) // every cut and restart was a new connection
  }, 90_000)
})
