// A device that sends QoS 2 messages and never releases them (no PUBREL): the gateway held each
// one until then, in memory and in broker.db, up to 65,535 messages of 1 MiB per client. Now a
// client has at most 64 waiting; one more closes its connection, and the gateway serves on.
import net from 'node:net'
import mqttPacket from 'mqtt-packet'
import type { MqttClient } from 'mqtt'
import { afterEach, describe, expect, it } from 'vitest'
import { createEnvelopeCodec } from '../../runtime/wire/codec.js'
import { ENVELOPE_VERSION } from '../../runtime/wire/envelope.js'
import { until } from '../helpers/wait.js'
import { startGatewayProcess, type GatewayProcess } from './gateway-attack-process.js'

const codec = createEnvelopeCodec({ maxFrameBytes: 1024 * 1024 })

describe('gateway under attack: QoS 2 messages never released', () => {
  let gw: GatewayProcess | undefined
  let socket: net.Socket | undefined
  const clients: MqttClient[] = []
  afterEach(async () => {
    socket?.destroy()
    for (const c of clients.splice(0)) c.end(true)
    await gw?.stop()
    gw = undefined
  })

  it('a client with 64 QoS 2 messages waiting for PUBREL is cut off at the next one; the gateway keeps serving', async () => {
    gw = await startGatewayProcess({ devices: ['dev-a', 'dev-b'] })
    const s = (socket = net.connect(Number(new URL(gw.mqttUrl).port), '127.0.0.1'))
    s.on('error', () => {})
    const parser = mqttPacket.parser()
    let connack: number | undefined
    let pubrecs = 0
    let closed = false
    parser.on('packet', (p) => {
      if (p.cmd === 'connack') connack = p.returnCode
      if (p.cmd === 'pubrec') pubrecs++
    })
    s.on('data', (d) => parser.parse(d))
    s.on('close', () => (closed = true))
    s.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'dev-a', username: 'dev-a', password: Buffer.from(gw.secrets['dev-a']!), keepalive: 0 }))
    await until(() => connack !== undefined, 20_000)
    expect(connack).toBe(0)
    // 300 valid events of 100 kB each on its own topic, QoS 2, and never a PUBREL.
    for (let i = 1; i <= 300 && !closed; i++) {
      const payload = Buffer.from(codec.encode({ v: ENVELOPE_VERSION, kind: 'event', id: `e${i}`, src: 'dev-a', inst: 'attack', at: Date.now(), service: 's', version: '1', name: 'e', payload: Buffer.alloc(100_000, i) }))
      s.write(mqttPacket.generate({ cmd: 'publish', qos: 2, dup: false, retain: false, messageId: i, topic: 'ob/dev-a/evt/s/1/e', payload }))
      if (i % 50 === 0) await new Promise((r) => setTimeout(r, 10))
    }
    await until(() => closed, 30_000)
    expect(pubrecs).toBeLessThanOrEqual(64)
    await until(() => gw!.lines.some((l) => l.includes('QoS 2 messages waiting for their PUBREL')), 10_000)
    const b = await gw.connect('dev-b')
    clients.push(b)
    expect(b.connected).toBe(true)
    expect((await gw.get('/readyz')).status).toBe(200)
    expect(gw.alive()).toBe(true)
  }, 60_000)
})
