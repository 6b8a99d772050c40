// A device on MQTT 5 (protocolVersion: 5) with its persistent session (the default) against
// Mosquitto (127.0.0.1:1883): what is published to it while it is away waits at the broker and
// arrives when it comes back, as on MQTT 3.1.1. Without a Session Expiry Interval in its CONNECT,
// an MQTT 5 session ends at the disconnect [MQTT-3.1.2-23]: the messages of the time away, and
// those a stopping runtime left unacknowledged, were lost.
import { randomBytes } from 'node:crypto'
import mqtt from 'mqtt'
import { describe, expect, it } from 'vitest'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { until } from '../helpers/wait.js'

describe('an MQTT 5 bridge with a persistent session', () => {
  const cleanup = cleanupAfterEach()

  it('gets what was published to it while it was away', async () => {
    const id = `mqtt5-${randomBytes(4).toString('hex')}`
    const topic = `outpost-test/${id}/in`
    const got: string[] = []
    const open = async () => {
      const b = createMqttBridge({ url: 'mqtt://127.0.0.1:1883', deviceId: id, protocolVersion: 5 })
      // Subscribed before it connects, as a runtime does: what the session kept arrives at once.
      const subscribed = b.subscribe(topic, (f) => void got.push(Buffer.from(f.payload).toString()))
      await b.connect()
      await subscribed
      return b
    }
    const first = await open()
    await first.close({ drainMs: 100 })
    const pub = await mqtt.connectAsync('mqtt://127.0.0.1:1883', { clientId: `${id}-pub`, protocolVersion: 5 })
    cleanup(() => pub.endAsync(true))
    for (let i = 0; i < 5; i++) await pub.publishAsync(topic, `away-${i}`, { qos: 1 })
    const second = await open()
    cleanup(async () => {
      await second.close({ drainMs: 100 })
      // The session would stay with the broker: ended by a clean start under its id.
      const c = await mqtt.connectAsync('mqtt://127.0.0.1:1883', { clientId: id, clean: true, protocolVersion: 5, properties: { sessionExpiryInterval: 0 } })
      await c.endAsync()
    })
    await until(() => got.length >= 5, 10_000)
    expect(got).toEqual(['away-0', 'away-1', 'away-2', 'away-3', 'away-4'])
  }, 30_000)
})
