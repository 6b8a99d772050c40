// The MQTT transport's own QoS 1 publishes (`callerResends`, runtime/bridges/mqtt/direct-publisher.ts):
// PUBACK reason codes of MQTT 5, packet ids shared with MQTT.js, the packet id provider itself.
import { randomBytes } from 'node:crypto'
import net from 'node:net'
import { describe, expect, it } from 'vitest'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createPacketIds } from '../../runtime/bridges/mqtt/packet-ids.js'
import { ErrorCode, isOutpostError } from '../../runtime/errors.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { until } from '../helpers/wait.js'
import { nextPacket } from '../helpers/mqtt-packets.js'

const text = (s: string): Uint8Array => new TextEncoder().encode(s)

/** One PUBLISH a scripted broker read: topic, packet id (0 for QoS 0), payload. */
interface SeenPublish {
  topic: string
  id: number
  payload: string
}

/**
 * A scripted broker (MQTT 3.1.1 or 5) on a real socket: answers CONNECT with a CONNACK, PINGREQ with
 * PINGRESP, and holds back the PUBACK of every QoS 1 PUBLISH until the test answers it with a
 * reason code of its choice (`ack`).
 */
async function scriptedBroker() {
  const seen: SeenPublish[] = []
  const sockets = new Set<net.Socket>()
  let current: net.Socket | undefined
  const server = net.createServer((socket) => {
    sockets.add(socket)
    current = socket
    socket.on('close', () => sockets.delete(socket))
    let buf: Buffer = Buffer.alloc(0)
    let level = 4 // the protocol level the client connected with
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk])
      for (;;) {
        const packet = nextPacket(buf)
        if (packet === undefined) return
        const { first, body } = packet
        buf = packet.rest
        const type = first >> 4
        // CONNACK, accepted (MQTT 5: with an empty property list); the protocol level follows the name "MQTT".
        if (type === 1) {
          level = body[6]!
          socket.write(Buffer.from(level === 5 ? [0x20, 0x03, 0x00, 0x00, 0x00] : [0x20, 0x02, 0x00, 0x00]))
        } else if (type === 12) socket.write(Buffer.from([0xd0, 0x00]))
        else if (type === 3) {
          const tl = body.readUInt16BE(0)
          const topic = body.toString('utf8', 2, 2 + tl)
          const qos = (first >> 1) & 3
          let o = 2 + tl
          const id = qos > 0 ? body.readUInt16BE(o) : 0
          if (qos > 0) o += 2
          if (level === 5) o += 1 + body[o]! // properties (empty or short: one byte of length here)
          seen.push({ topic, id, payload: body.toString('utf8', o) })
        }
      }
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as net.AddressInfo).port
  return {
    url: `mqtt://127.0.0.1:${port}`,
    seen,
    /** Sends the PUBACK of packet `id` with `reasonCode` (0: the short form of two bytes). */
    ack(id: number, reasonCode: number): void {
      const packet = reasonCode === 0 ? Buffer.from([0x40, 0x02, id >> 8, id & 0xff]) : Buffer.from([0x40, 0x04, id >> 8, id & 0xff, reasonCode, 0x00])
      current!.write(packet)
    },
    /** Stops reading from the client (its writes back up), or reads again. */
    reading(on: boolean): void {
      if (on) current!.resume()
      else current!.pause()
    },
    async close(): Promise<void> {
      for (const s of sockets) s.destroy()
      await new Promise<void>((r) => server.close(() => r()))
    },
  }
}

async function settled(p: Promise<unknown>): Promise<unknown> {
  try {
    await p
    return 'resolved'
  } catch (err) {
    return err
  }
}

describe('direct QoS 1 publishes (callerResends)', () => {
  const cleanup = cleanupAfterEach()

  it('MQTT 5: a PUBACK with a failure reason code rejects; success and "no matching subscribers" resolve', async () => {
    const broker = await scriptedBroker()
    const bridge = createMqttBridge({ url: broker.url, deviceId: 'dp5', protocolVersion: 5 })
    cleanup(() => broker.close(), () => bridge.close({ drainMs: 50 }))
    await bridge.connect()
    const refused = bridge.publish('t/refused', text('no'), { callerResends: true })
    const fine = bridge.publish('t/fine', text('yes'), { callerResends: true })
    const unheard = bridge.publish('t/unheard', text('nobody'), { callerResends: true })
    await until(() => broker.seen.length === 3)
    expect(broker.seen.map((p) => [p.topic, p.payload])).toEqual([['t/refused', 'no'], ['t/fine', 'yes'], ['t/unheard', 'nobody']])
    const [r, f, u] = broker.seen
    broker.ack(r!.id, 0x87) // not authorized
    broker.ack(f!.id, 0)
    broker.ack(u!.id, 0x10) // no matching subscribers: a success
    const err = await settled(refused)
    expect(isOutpostError(err, ErrorCode.BRIDGE_UNAVAILABLE)).toBe(true)
    expect(String((err as Error).message)).toContain('0x87')
    expect(await settled(fine)).toBe('resolved')
    expect(await settled(unheard)).toBe('resolved')
    expect(bridge.stats().published).toBe(2)
    expect(bridge.status.type).toBe('connected')
  })

  it('never gives one of its packet ids to MQTT.js while it awaits the PUBACK, and MQTT.js gets its own PUBACKs', async () => {
    const broker = await scriptedBroker()
    const bridge = createMqttBridge({ url: broker.url, deviceId: 'dpids', protocolVersion: 5, inFlightWindow: 1_000 })
    cleanup(() => broker.close(), () => bridge.close({ drainMs: 50 }))
    await bridge.connect()
    const results: Promise<unknown>[] = []
    for (let i = 0; i < 300; i++) results.push(settled(bridge.publish('t/mix', text(String(i)), i % 2 === 0 ? { callerResends: true } : { qos: 1 })))
    await until(() => broker.seen.length === 300)
    const ids = broker.seen.map((p) => p.id)
    expect(new Set(ids).size).toBe(300)
    expect(ids.every((id) => id >= 1 && id <= 65_535)).toBe(true)
    // Answered in reverse, to both kinds: every publish settles with its own PUBACK.
    for (const id of [...ids].reverse()) broker.ack(id, 0)
    expect(new Set(await Promise.all(results))).toEqual(new Set(['resolved']))
    expect(bridge.stats().published).toBe(300)
  })

  it('rejects what still awaits its PUBACK when the bridge closes', async () => {
    const broker = await scriptedBroker()
    const bridge = createMqttBridge({ url: broker.url, deviceId: 'dpclose' })
    cleanup(() => broker.close())
    await bridge.connect()
    const waiting = settled(bridge.publish('t/never', text('unanswered'), { callerResends: true }))
    await until(() => broker.seen.length === 1)
    await bridge.close({ drainMs: 50 })
    expect(isOutpostError(await waiting, ErrorCode.BRIDGE_UNAVAILABLE)).toBe(true)
    expect(bridge.stats().published).toBe(0)
  })

  it('waits for the socket to drain when a write says so, and writes what waited in order', async () => {
    const broker = await scriptedBroker()
    const bridge = createMqttBridge({ url: broker.url, deviceId: 'dpdrain', protocolVersion: 5 })
    cleanup(() => broker.close(), () => bridge.close({ drainMs: 50 }))
    await bridge.connect()
    broker.reading(false)
    const big = (i: number): Uint8Array => text(`${i};`.padEnd(256 * 1024, '.'))
    const results = Array.from({ length: 60 }, (_, i) => settled(bridge.publish('t/big', big(i), { callerResends: true })))
    await new Promise((r) => setTimeout(r, 200))
    expect(broker.seen.length).toBe(0)
    broker.reading(true)
    await until(() => broker.seen.length === 60, 10_000)
    expect(broker.seen.map((p) => p.payload.slice(0, p.payload.indexOf(';')))).toEqual(Array.from({ length: 60 }, (_, i) => String(i)))
    expect(broker.seen.every((p) => p.payload.length === 256 * 1024)).toBe(true)
    for (const p of broker.seen) broker.ack(p.id, 0)
    expect(new Set(await Promise.all(results))).toEqual(new Set(['resolved']))
  })

  it('over Mosquitto with MQTT 5: settles with and without a subscriber, and the subscriber gets the bytes', async () => {
    const url = process.env.OUTPOST_MOSQUITTO_URL ?? 'mqtt://127.0.0.1:1883'
    const run = randomBytes(4).toString('hex')
    const pub = createMqttBridge({ url, deviceId: 'dppub', clientId: `dppub-${run}`, protocolVersion: 5, persistentSession: false })
    const sub = createMqttBridge({ url, deviceId: 'dpsub', clientId: `dpsub-${run}`, protocolVersion: 5, persistentSession: false })
    cleanup(() => pub.close({ drainMs: 50 }), () => sub.close({ drainMs: 50 }))
    await Promise.all([pub.connect(), sub.connect()])
    // No subscriber: Mosquitto answers 0x10 (no matching subscribers).
    await expect(pub.publish(`dp-${run}/nobody`, text('x'), { callerResends: true })).resolves.toBeUndefined()
    const got: string[] = []
    await sub.subscribe(`dp-${run}/x`, (f) => void got.push(new TextDecoder().decode(f.payload)))
    for (let i = 0; i < 50; i++) await pub.publish(`dp-${run}/x`, text(`m${i}`), { callerResends: true, qos: 1 })
    await until(() => got.length === 50)
    expect(got).toEqual(Array.from({ length: 50 }, (_, i) => `m${i}`))
  })
})

describe('packet ids shared by MQTT.js and the transport', () => {
  it('hands out no id that is held, and MQTT.js clearing its ids leaves the transport its own', () => {
    const ids = createPacketIds()
    const own = new Set<number>()
    for (let i = 0; i < 1_000; i++) own.add(ids.take()!)
    const theirs = new Set<number>()
    for (let i = 0; i < 1_000; i++) theirs.add(ids.allocate()!)
    expect(own.size + theirs.size).toBe(2_000)
    expect([...theirs].some((id) => own.has(id))).toBe(false)
    ids.clear() // MQTT.js on a CONNACK
    for (const id of own) expect(ids.register(id)).toBe(false)
    // Every other id is free again: exactly 65,535 - 1,000 can be taken.
    let more = 0
    while (ids.allocate() !== null) more++
    expect(more).toBe(65_535 - 1_000)
    expect(ids.take()).toBeNull()
    const first = [...own][0]!
    ids.release(first)
    expect(ids.take()).toBe(first)
  })
})
