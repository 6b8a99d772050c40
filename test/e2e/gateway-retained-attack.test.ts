// An attacker against what a real gateway process (`outpost gateway --config`, authentication
// off) keeps of the messages it is sent, found by attacking it from outside
// (gateway-retained-flood.test.ts has the flood the retained bound was made for).
//
// The bounds count a kept message's topic and payload bytes; what the broker kept in memory was
// the payload as the MQTT parser handed it over: a view into the whole socket read it came in, up
// to 64 kB. A client that sends a 1-byte message in the same write as 60 kB meant for nobody pins
// the 60 kB for as long as the message is kept (retained, or queued for a session that is away):
// thousands of them held hundreds of MB while the bounds counted a few kB.
import net from 'node:net'
import mqtt from 'mqtt'
import mqttPacket from 'mqtt-packet'
import { describe, expect, it } from 'vitest'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { until } from '../helpers/wait.js'
import { startGatewayProcess } from './gateway-attack-process.js'

const MiB = 1024 * 1024

function valueOf(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `))
  return line === undefined ? Number.NaN : Number(line.slice(series.length + 1))
}

/** A client by hand (mqtt-packet on a socket): each write holds exactly the packets given. */
async function rawClient(mqttUrl: string, clientId: string, cleanup: (...steps: (() => unknown)[]) => void) {
  const url = new URL(mqttUrl)
  const socket = net.connect(Number(url.port), url.hostname)
  cleanup(() => socket.destroy())
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject))
  const parser = mqttPacket.parser({ protocolVersion: 4 })
  const got: string[] = []
  parser.on('packet', (p) => got.push(p.cmd))
  socket.on('data', (chunk) => parser.parse(chunk))
  socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId, keepalive: 0 }))
  await until(() => got.includes('connack'), 10_000)
  return {
    /** Writes `count` times one small packet (made by `small(i)`) followed by 60 kB published where nobody listens, each pair in one write. */
    async pairs(count: number, small: (i: number) => Buffer): Promise<void> {
      const pad = mqttPacket.generate({ cmd: 'publish', topic: 'pad', payload: Buffer.alloc(60_000, 1), qos: 0, retain: false, dup: false })
      for (let i = 0; i < count; i++) {
        if (!socket.write(Buffer.concat([small(i), pad]))) await new Promise((resolve) => socket.once('drain', resolve))
      }
      // The broker handles a connection's packets in order: the PINGRESP comes after the last one.
      socket.write(mqttPacket.generate({ cmd: 'pingreq' }))
      await until(() => got.includes('pingresp'), 60_000)
    },
  }
}

const COUNT = 5_000

describe('what a gateway keeps of messages sent beside large ones (authentication off)', () => {
  const cleanup = cleanupAfterEach()

  it('a 1-byte retained message sent in one write with 60 kB retained nowhere does not keep the 60 kB: memory stays near the bytes bound', async () => {
    const gw = await startGatewayProcess({ extra: 'auth: { enabled: false }\n', mqtt: `retainedMaxBytes: ${MiB}` })
    cleanup(() => gw.stop())
    const own = valueOf(await (await gw.get('/metrics')).text(), 'outpost_gateway_retained_messages')
    const attacker = await rawClient(gw.mqttUrl, 'attacker', cleanup)
    const rssBefore = gw.rssBytes()
    await attacker.pairs(COUNT, (i) => mqttPacket.generate({ cmd: 'publish', topic: `k/${i}`, payload: Buffer.from('x'), qos: 0, retain: true, dup: false }))

    // All kept, and counted as the few bytes they are.
    const text = await (await gw.get('/metrics')).text()
    expect(valueOf(text, 'outpost_gateway_retained_messages')).toBe(own + COUNT)
    expect(valueOf(text, 'outpost_gateway_retained_bytes')).toBeLessThan(MiB)
    expect(gw.alive()).toBe(true)
    // 5,000 × 60 kB is 300 MB when every read is kept; the bound is 1 MB (150 MB leaves room for garbage not yet collected).
    const rssAfter = gw.rssBytes()
    expect(rssAfter - rssBefore, `after ${rssAfter} before ${rssBefore}`).toBeLessThan(150 * MiB)
  }, 120_000)

  it('1-byte QoS 1 messages queued for a session that is away, each sent with 60 kB for nobody, do not keep the 60 kB', async () => {
    const gw = await startGatewayProcess({ extra: 'auth: { enabled: false }\n' })
    cleanup(() => gw.stop())
    // A persistent session subscribed to q/#, then gone: what is published there is queued for it.
    const away = await mqtt.connectAsync(gw.mqttUrl, { clientId: 'away', clean: false, reconnectPeriod: 0 })
    await away.subscribeAsync('q/#', { qos: 1 })
    await away.endAsync()
    const attacker = await rawClient(gw.mqttUrl, 'attacker', cleanup)
    const rssBefore = gw.rssBytes()
    await attacker.pairs(COUNT, (i) => mqttPacket.generate({ cmd: 'publish', topic: `q/${i % 10}`, payload: Buffer.from('x'), qos: 1, messageId: 1 + (i % 60_000), retain: false, dup: false }))

    const text = await (await gw.get('/metrics')).text()
    expect(valueOf(text, 'outpost_gateway_session_queued_messages')).toBe(COUNT)
    expect(valueOf(text, 'outpost_gateway_session_queued_bytes')).toBeLessThan(MiB)
    expect(gw.alive()).toBe(true)
    const rssAfter = gw.rssBytes()
    expect(rssAfter - rssBefore, `after ${rssAfter} before ${rssBefore}`).toBeLessThan(150 * MiB)

    // The session gets its queue when it comes back, every message once.
    // Listening before the CONNACK: queued messages can come in the same read.
    const back = mqtt.connect(gw.mqttUrl, { clientId: 'away', clean: false, reconnectPeriod: 0 })
    cleanup(() => back.endAsync(true))
    let received = 0
    back.on('message', () => received++)
    await until(() => received === COUNT, 60_000)
  }, 120_000)
})
