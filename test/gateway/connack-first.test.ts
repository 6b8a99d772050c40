// A client returning to its persistent session gets the CONNACK before any PUBLISH
// [MQTT-3.2.0-1]. aedes restores the session's subscriptions before it stores the will and
// writes the CONNACK, and delivered what was published in between at once. MQTT.js takes such a
// PUBLISH, holds its PUBACK until it is connected and reads nothing more, the CONNACK included,
// until its connect timeout: the gateway's own connection, restarted while devices published,
// failed that way after 30 s under load, and with it the gateway's start. Here broker.db is slow
// to store the will (a loaded disk), which holds that window open while a message comes.
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import mqtt from 'mqtt'
import mqttPacket from 'mqtt-packet'
import { describe, expect, it } from 'vitest'
import { startMqttBroker } from '../../gateway/broker/mqtt-broker.js'
import { createSqlitePersistence } from '../../gateway/persistence/sqlite-persistence.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { until } from '../helpers/wait.js'

const will = { topic: 'gone/returning', payload: Buffer.from('gone'), qos: 1 as const, retain: false }

describe('a returning persistent session', () => {
  const cleanup = cleanupAfterEach()

  /** A broker on broker.db whose will writes wait until `release` once `slow` is set; `entered` tells when one began. */
  const start = async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-connack-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    const persistence = createSqlitePersistence({ path: path.join(dir, 'broker.db') })
    const putWill = persistence.putWill.bind(persistence)
    const gate = { slow: false, entered: false, release: () => {} }
    persistence.putWill = async (client, packet) => {
      if (gate.slow) {
        gate.entered = true
        await new Promise<void>((r) => (gate.release = r))
      }
      return putWill(client, packet)
    }
    const broker = await startMqttBroker({ port: 0, aedes: { persistence } })
    cleanup(async () => {
      gate.release()
      await broker.close()
      await persistence.destroy()
    })
    const first = await mqtt.connectAsync(broker.url, { clientId: 'returning', clean: false, reconnectPeriod: 0 })
    await first.subscribeAsync('q/#', { qos: 1 })
    await first.endAsync()
    const publisher = await mqtt.connectAsync(broker.url, { clientId: 'publisher', reconnectPeriod: 0 })
    cleanup(() => publisher.endAsync(true))
    gate.slow = true
    return { broker, gate, publisher }
  }

  it('gets the CONNACK first when a message comes while the broker restores the session (raw socket)', async () => {
    const { broker, gate, publisher } = await start()
    const s = net.connect(broker.port, '127.0.0.1')
    cleanup(() => s.destroy())
    s.on('error', () => {})
    const parser = mqttPacket.parser()
    const got: string[] = []
    parser.on('packet', (p) => void got.push(p.cmd === 'publish' ? `publish ${p.topic}` : p.cmd))
    s.on('data', (d) => parser.parse(d))
    s.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: false, clientId: 'returning', keepalive: 0, will }))
    await until(() => gate.entered, 10_000)
    // Subscribed again already, CONNACK not written yet: a message for the session comes now.
    await publisher.publishAsync('q/1', 'while connecting', { qos: 1 })
    await new Promise((r) => setTimeout(r, 100))
    gate.release()
    await until(() => got.includes('publish q/1') && got.includes('connack'), 10_000)
    expect(got.slice(0, 2)).toEqual(['connack', 'publish q/1'])
  })

  it('an MQTT.js client connects and gets the message, not stalled until its connect timeout', async () => {
    const { broker, gate, publisher } = await start()
    const got: string[] = []
    const c = mqtt.connect(broker.url, { clientId: 'returning', clean: false, reconnectPeriod: 0, connectTimeout: 60_000, will })
    cleanup(() => c.endAsync(true))
    c.on('message', (topic) => void got.push(topic))
    await until(() => gate.entered, 10_000)
    await publisher.publishAsync('q/1', 'while connecting', { qos: 1 })
    await new Promise((r) => setTimeout(r, 100))
    gate.release()
    // With the message before the CONNACK, the client is still not connected when this gives up.
    await until(() => c.connected && got.includes('q/1'), 10_000)
    // QoS 1: at least once (the session's queue may hand over the copy delivered live again).
    expect(new Set(got)).toEqual(new Set(['q/1']))
  })
})
