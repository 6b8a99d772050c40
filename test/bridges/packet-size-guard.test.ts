// Packets larger than allowed are refused while they are read, not after they were buffered:
// on the device (the packet is skipped and stands in as a small PUBLISH the client acknowledges)
// and on the gateway's broker (the client that sent it is disconnected).
import { Duplex } from 'node:stream'
import mqtt from 'mqtt'
import { describe, expect, it } from 'vitest'
import { startMqttBroker } from '../../gateway/broker/mqtt-broker.js'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { guardPacketSize, type OversizedPacket } from '../../runtime/bridges/mqtt/packet-size-guard.js'
import { createRuntime, ErrorCode } from '../../runtime/index.js'
import { counterService } from '../fixtures/services.js'
import { bareAedes } from '../helpers/bare-aedes.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { remainingLength } from '../helpers/mqtt-packets.js'
import { until } from '../helpers/wait.js'

/** The bytes of an MQTT 3.1.1 PUBLISH. */
function publish(topic: string, payload: Buffer, qos: 0 | 1, id = 7): Buffer {
  const t = Buffer.from(topic)
  const variable = Buffer.concat([Buffer.from([t.length >> 8, t.length & 0xff]), t, qos > 0 ? Buffer.from([id >> 8, id & 0xff]) : Buffer.alloc(0)])
  return Buffer.concat([Buffer.from([0x30 | (qos << 1)]), remainingLength(variable.length + payload.length), variable, payload])
}
const PINGRESP = Buffer.from([0xd0, 0x00])

/** A socket stand-in: bytes pushed into it are what its reader (MQTT.js, aedes) would get. */
function guarded(opts: Parameters<typeof guardPacketSize>[1]) {
  const socket = new Duplex({ read() {}, write(_c, _e, cb) { cb() } })
  const received: Buffer[] = []
  let largestPush = 0
  socket.on('data', (b: Buffer) => {
    received.push(b)
    largestPush = Math.max(largestPush, b.length)
  })
  guardPacketSize(socket, opts)
  /** Everything the reader got, once the stream has handed on what it holds. */
  const bytes = async (): Promise<Buffer> => {
    while (socket.readableLength > 0) await new Promise((r) => setImmediate(r))
    await new Promise((r) => setImmediate(r))
    return Buffer.concat(received)
  }
  return { socket, bytes, largestPush: () => largestPush }
}

/** Feeds `bytes` in chunks of the given sizes (repeating the last). */
function feed(socket: Duplex, bytes: Buffer, sizes: number[]): void {
  let at = 0
  let k = 0
  while (at < bytes.length) {
    const n = sizes[Math.min(k++, sizes.length - 1)]!
    socket.push(bytes.subarray(at, at + n))
    at += n
  }
}

describe('packet size guard', () => {
  const marker = Buffer.from('0123456789abcdef')

  it('hands packets of allowed size on byte for byte, however the chunks cut them', async () => {
    const stream = Buffer.concat([publish('ob/a/evt/s/1/e', Buffer.alloc(300, 1), 1), PINGRESP, publish('t', Buffer.alloc(200, 2), 0), publish('ob/x', Buffer.alloc(1000, 3), 1, 9)])
    for (const sizes of [[stream.length], [1], [2, 3, 5], [7], [127, 1, 64]]) {
      const g = guarded({ maxPacketBytes: 1_100, mode: 'shrink', marker })
      feed(g.socket, stream, sizes)
      expect((await g.bytes()).equals(stream), String(sizes)).toBe(true)
    }
  })

  it('skips an oversized PUBLISH as it arrives and hands on a small one of the same topic and packet id', async () => {
    const before = publish('ob/a/cmd/dev/s/1/c', Buffer.alloc(50, 1), 1, 1)
    const huge = publish('ob/attacker/cmd/dev/s/1/c', Buffer.alloc(8 * 1024 * 1024, 0x41), 1, 0x1234)
    const after = publish('ob/a/cmd/dev/s/1/c', Buffer.alloc(60, 2), 1, 2)
    const seen: OversizedPacket[] = []
    for (const sizes of [[65_536], [1, 2, 3, 65_536], [5_000]]) {
      const g = guarded({ maxPacketBytes: 64 * 1024, mode: 'shrink', marker, onOversized: (p) => void seen.push(p) })
      feed(g.socket, Buffer.concat([before, huge, after]), sizes)
      const expected = Buffer.concat([before, publish('ob/attacker/cmd/dev/s/1/c', marker, 1, 0x1234), after])
      expect((await g.bytes()).equals(expected), String(sizes)).toBe(true)
      expect(g.largestPush()).toBeLessThanOrEqual(65_536) // nothing the size of the packet was ever handed on
    }
    expect(seen[0]).toEqual({ type: 3, bytes: 8 * 1024 * 1024 + 2 + 25 + 2, topic: 'ob/attacker/cmd/dev/s/1/c' })
  })

  it('takes the PUBACKs its listener claims out of the stream and hands every other packet on unchanged, however the chunks cut them', async () => {
    const puback = (id: number): Buffer => Buffer.from([0x40, 0x02, id >> 8, id & 0xff])
    // MQTT 5: reason code and properties (a reason string) after the packet id.
    const puback5 = (id: number, code: number): Buffer => Buffer.from([0x40, 0x09, id >> 8, id & 0xff, code, 0x05, 0x1f, 0x00, 0x02, 0x6e, 0x6f])
    const ours = new Set([0x0101, 0x0202, 0x0303, 0x0404])
    const stream = Buffer.concat([puback(0x0101), publish('ob/a', Buffer.alloc(30, 1), 1, 0x0101), puback(0x0999), puback(0x0202), PINGRESP, puback5(0x0303, 0x87), puback5(0x0888, 0x10), puback(0x0404)])
    const handedOn = Buffer.concat([publish('ob/a', Buffer.alloc(30, 1), 1, 0x0101), puback(0x0999), PINGRESP, puback5(0x0888, 0x10)])
    for (const sizes of [[stream.length], [1], [2, 3, 5], [3], [4], [7], [127, 1, 64]]) {
      const taken: [number, number][] = []
      const g = guarded({ maxPacketBytes: 1_100, mode: 'shrink', marker, protocolVersion: 5, onPuback: (id, code) => ours.has(id) && taken.push([id, code]) > 0 })
      feed(g.socket, stream, sizes)
      expect((await g.bytes()).equals(handedOn), String(sizes)).toBe(true)
      expect(taken, String(sizes)).toEqual([[0x0101, 0], [0x0202, 0], [0x0303, 0x87], [0x0404, 0]])
    }
    // MQTT 3.1.1: a PUBACK is two bytes after its header; one longer is malformed and left to the parser.
    const odd = Buffer.from([0x40, 0x03, 0x01, 0x01, 0x00])
    const g = guarded({ maxPacketBytes: 1_100, mode: 'shrink', marker, onPuback: () => true })
    feed(g.socket, Buffer.concat([puback(0x0101), odd]), [1])
    expect((await g.bytes()).equals(odd)).toBe(true)
  })

  it('closes the connection on an oversized packet in close mode, before reading its body', () => {
    const g = guarded({ maxPacketBytes: 1024, mode: 'close' })
    const seen: OversizedPacket[] = []
    const g2 = guarded({ maxPacketBytes: 1024, mode: 'close', onOversized: (p) => void seen.push(p) })
    const bytes = Buffer.concat([publish('ok', Buffer.alloc(10), 0), publish('big', Buffer.alloc(4096), 1)])
    feed(g.socket, bytes.subarray(0, 40), [40])
    feed(g2.socket, bytes.subarray(0, 40), [40])
    expect(g.socket.destroyed).toBe(true)
    expect(seen).toEqual([{ type: 3, bytes: 4096 + 5 + 2 }])
  })
})

describe('oversized packets over a real broker', () => {
  const cleanup = cleanupAfterEach()

  it('lets a device survive a 48 MiB publish on its command topic: dropped as too large, acknowledged, still connected', async () => {
    // A broker without a size limit of its own, as a third party might run one.
    const broker = await bareAedes()
    cleanup(() => broker.close())
    const statuses: string[] = []
    const bridge = createMqttBridge({ url: broker.url, deviceId: 'dev-a', maxPayloadBytes: 64 * 1024 })
    bridge.onStatus((s) => statuses.push(s.type))
    const device = createRuntime({ bridge, services: [counterService({ executions: 0, slowAborted: 0, events: [] })] })
    await device.start({ waitForBroker: true })
    cleanup(() => device.stop({ drainMs: 200 }))
    const raw = await mqtt.connectAsync(broker.url, { clientId: 'raw-big' })
    cleanup(() => raw.endAsync())
    let acked = false
    broker.aedes.on('ack', (_packet, client) => {
      if (client?.id === 'dev-a') acked = true
    })
    await raw.publishAsync('ob/raw/cmd/dev-a/counter/1/add', Buffer.alloc(48 * 1024 * 1024, 0x42), { qos: 1 })
    await until(() => (device.stats().bridge.dropped[ErrorCode.FRAME_TOO_LARGE] ?? 0) === 1, 30_000)
    await until(() => acked, 10_000) // acknowledged: the broker will not deliver it again
    expect(statuses).not.toContain('disconnected')
    expect(bridge.status.type).toBe('connected')
  }, 60_000)

  it('disconnects a client whose packet is larger than the gateway broker allows, and serves the others', async () => {
    const refused: number[] = []
    const broker = await startMqttBroker({ port: 0, maxPacketBytes: 64 * 1024, onOversizedPacket: (p) => void refused.push(p.bytes) })
    cleanup(() => broker.close())
    const good = await mqtt.connectAsync(broker.url, { clientId: 'good' })
    cleanup(() => good.endAsync())
    const got: string[] = []
    await good.subscribeAsync('t/#', { qos: 1 })
    good.on('message', (topic) => got.push(topic))
    const bad = await mqtt.connectAsync(broker.url, { clientId: 'bad', reconnectPeriod: 0 })
    cleanup(() => bad.endAsync(true))
    let closed = false
    bad.on('close', () => (closed = true))
    bad.publish('t/big', Buffer.alloc(1024 * 1024, 1), { qos: 0 })
    await until(() => closed, 10_000)
    expect(broker.oversizedPackets).toBe(1)
    expect(refused[0]).toBeGreaterThan(1024 * 1024)
    await good.publishAsync('t/small', Buffer.alloc(1024, 2), { qos: 1 })
    await until(() => got.includes('t/small'))
    expect(got).not.toContain('t/big')
  })
})
