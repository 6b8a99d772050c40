// Outside test (issue 12, packet ids shared by MQTT.js and the direct publisher): 70,000 outbox
// entries drain over direct publishes (the 16-bit packet ids wrap around) while MQTT.js publishes
// QoS 1 messages of its own on the same connection, and the link is cut once after the wrap.
// Every entry and every MQTT.js message arrives; every MQTT.js publish settles.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import mqtt from 'mqtt'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { startMqttBroker } from '../../gateway/broker/mqtt-broker.js'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createOutboxPump } from '../../runtime/outbox/outbox-pump.js'
import { createSqliteOutbox, openDeviceDatabase } from '../../runtime/stores/sqlite/index.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { tcpProxy } from '../helpers/tcp-proxy.js'
import { until } from '../helpers/wait.js'

const TOTAL = 70_000

describe('packet ids wrapping around during a drain', () => {
  const cleanup = cleanupAfterEach()

  it('delivers every outbox entry and every MQTT.js publish across the wrap and a cut', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-wrap-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    const broker = await startMqttBroker({ port: 0 })
    cleanup(() => broker.close())
    const proxy = await tcpProxy(broker.url)
    cleanup(() => proxy.close())
    const events = new Set<number>()
    const side = new Set<number>()
    const sub = await mqtt.connectAsync(broker.url, { clientId: 'wrap-counter' })
    cleanup(() => sub.endAsync(true))
    sub.on('message', (topic, buf) => {
      if (topic === 'wrap/dev/e') events.add(Number(buf.toString()))
      else side.add(Number(buf.toString()))
    })
    await sub.subscribeAsync(['wrap/dev/e', 'wrap/dev/side'], { qos: 1 })

    const db = openDeviceDatabase({ path: path.join(dir, 'dev.db') })
    cleanup(() => db.close())
    const outbox = createSqliteOutbox(db)
    db.db.transaction(() => {
      for (let i = 1; i <= TOTAL; i++) outbox.append({ stream: 'events', topic: 'wrap/dev/e', frame: Buffer.from(String(i)), retain: false })
    })()
    const bridge = createMqttBridge({ url: proxy.url, deviceId: 'wrap-dev', reconnect: { initialMs: 20, maxMs: 50 } })
    cleanup(() => bridge.close({ drainMs: 100 }))
    const pump = createOutboxPump({ outbox, bridge, log: pino({ level: 'silent' }) })
    cleanup(() => pump.stop(100))
    await bridge.connect()

    // MQTT.js's own QoS 1 publishes, one every few ms, for the whole drain.
    let n = 0
    let settledSide = 0
    let running = true
    const sideLoop = (async () => {
      while (running) {
        if (bridge.status.type === 'connected') {
          const k = ++n
          // One that fails on a cut is sent again, as a caller of MQTT.js's publishes would.
          const send = (): Promise<void> => bridge.publish('wrap/dev/side', Buffer.from(String(k))).catch(async () => {
            await until(() => bridge.status.type === 'connected', 10_000)
            return send()
          })
          void send().then(() => settledSide++)
        }
        await new Promise((r) => setTimeout(r, 3))
      }
    })()
    await until(() => events.size >= 66_000, 40_000)
    proxy.cut()
    await until(() => outbox.stats().entries === 0, 30_000)
    running = false
    await sideLoop
    await until(() => settledSide === n, 10_000)
    await until(() => events.size === TOTAL && side.size === n, 5_000).catch(() => {})
    expect(events.size).toBe(TOTAL)
    expect(n).toBeGreaterThan(100)
    expect(side.size).toBe(n)
  }, 90_000)
})
