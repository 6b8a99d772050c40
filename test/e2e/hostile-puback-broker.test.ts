// Outside test (issue 12, direct publisher): a hostile "broker" — a plain TCP server speaking just
// enough MQTT — answers the transport's own QoS 1 publishes (callerResends) with PUBACKs for ids
// never used, duplicates, PUBACKs cut byte by byte across TCP chunks, a PUBACK for an id MQTT.js
// used, malformed PUBACKs and (MQTT 5) failure reason codes. The device must not crash, must not
// settle a publish on someone else's PUBACK, must not lose an outbox entry, and must keep serving.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import net from 'node:net'
import path from 'node:path'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createOutboxPump } from '../../runtime/outbox/outbox-pump.js'
import { createSqliteOutbox, openDeviceDatabase } from '../../runtime/stores/sqlite/index.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { until } from '../helpers/wait.js'
import { nextPacket } from '../helpers/mqtt-packets.js'

interface Seen {
  topic: string
  id: number
  qos: number
  payload: string
  conn: number
}

/** A hostile broker: CONNACK, SUBACK, PINGRESP; PUBACKs only when the test writes them (or `autoAck`). */
async function hostileBroker(opts: { autoAck?: (p: Seen, level: number) => Buffer | undefined } = {}) {
  const seen: Seen[] = []
  const sockets = new Set<net.Socket>()
  let current: net.Socket | undefined
  let conns = 0
  const server = net.createServer((socket) => {
    socket.setNoDelay(true)
    sockets.add(socket)
    current = socket
    const conn = ++conns
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    let buf: Buffer = Buffer.alloc(0)
    let level = 4
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk])
      for (;;) {
        const packet = nextPacket(buf)
        if (packet === undefined) return
        const { first, body } = packet
        buf = packet.rest
        const type = first >> 4
        if (type === 1) {
          level = body[6]!
          socket.write(Buffer.from(level === 5 ? [0x20, 0x03, 0x00, 0x00, 0x00] : [0x20, 0x02, 0x00, 0x00]))
        } else if (type === 8) {
          // SUBACK granting QoS 1 to every filter.
          const id = body.readUInt16BE(0)
          let o = 2
          if (level === 5) o += 1 + body[o]!
          let n = 0
          while (o < body.length) {
            o += 2 + body.readUInt16BE(o) + 1
            n++
          }
          const head = level === 5 ? [0x90, 3 + n, id >> 8, id & 0xff, 0x00] : [0x90, 2 + n, id >> 8, id & 0xff]
          socket.write(Buffer.from([...head, ...Array<number>(n).fill(1)]))
        } else if (type === 12) socket.write(Buffer.from([0xd0, 0x00]))
        else if (type === 3) {
          const tl = body.readUInt16BE(0)
          const topic = body.toString('utf8', 2, 2 + tl)
          const qos = (first >> 1) & 3
          let o = 2 + tl
          const id = qos > 0 ? body.readUInt16BE(o) : 0
          if (qos > 0) o += 2
          if (level === 5) o += 1 + body[o]!
          const p = { topic, id, qos, payload: body.toString('utf8', o), conn }
          seen.push(p)
          const reply = opts.autoAck?.(p, level)
          if (reply !== undefined) socket.write(reply)
        }
      }
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as net.AddressInfo).port
  return {
    url: `mqtt://127.0.0.1:${port}`,
    seen,
    get connections() {
      return conns
    },
    write(bytes: number[] | Buffer): void {
      current!.write(Buffer.from(bytes))
    },
    /** Writes `bytes` one byte per TCP chunk (a pause between them). */
    async trickle(bytes: number[]): Promise<void> {
      for (const b of bytes) {
        current!.write(Buffer.from([b]))
        await new Promise((r) => setTimeout(r, 4))
      }
    },
    cut(): void {
      current?.destroy()
    },
    async close(): Promise<void> {
      for (const s of sockets) s.destroy()
      await new Promise<void>((r) => server.close(() => r()))
    },
  }
}

const puback = (id: number): number[] => [0x40, 0x02, id >> 8, id & 0xff]
const text = (s: string): Uint8Array => new TextEncoder().encode(s)

/** Tracks how a promise settled, without awaiting it. */
function track(p: Promise<unknown>): { state: 'pending' | 'resolved' | 'rejected' } {
  const t = { state: 'pending' as 'pending' | 'resolved' | 'rejected' }
  p.then(
    () => (t.state = 'resolved'),
    () => (t.state = 'rejected'),
  )
  return t
}
const tick = (ms = 60): Promise<void> => new Promise((r) => setTimeout(r, ms))

describe('a hostile broker answering direct publishes', () => {
  const cleanup = cleanupAfterEach()

  it('PUBACKs for ids never used and duplicate PUBACKs settle nothing else; the connection keeps serving', async () => {
    const broker = await hostileBroker()
    const bridge = createMqttBridge({ url: broker.url, deviceId: 'hostile-1' })
    cleanup(() => broker.close(), () => bridge.close({ drainMs: 50 }))
    await bridge.connect()
    const a = track(bridge.publish('h/a', text('a'), { callerResends: true }))
    const b = track(bridge.publish('h/b', text('b'), { callerResends: true }))
    await until(() => broker.seen.length === 2)
    const [pa, pb] = broker.seen
    expect(pa!.id).not.toBe(pb!.id)
    // Ids nobody used.
    for (const id of [0, 65_535, 4_242, pb!.id + 1000]) broker.write(puback(id))
    await tick()
    expect([a.state, b.state]).toEqual(['pending', 'pending'])
    // A's PUBACK, three times: A resolves, B does not.
    broker.write(Buffer.concat([Buffer.from(puback(pa!.id)), Buffer.from(puback(pa!.id)), Buffer.from(puback(pa!.id))]))
    await until(() => a.state !== 'pending')
    await tick()
    expect([a.state, b.state]).toEqual(['resolved', 'pending'])
    // C is published after the duplicates: a late duplicate of A's PUBACK does not settle it.
    const c = track(bridge.publish('h/c', text('c'), { callerResends: true }))
    await until(() => broker.seen.length === 3)
    broker.write(puback(pa!.id))
    await tick()
    expect([b.state, c.state]).toEqual(['pending', 'pending'])
    broker.write(Buffer.concat([Buffer.from(puback(broker.seen[2]!.id)), Buffer.from(puback(pb!.id))]))
    await until(() => b.state !== 'pending' && c.state !== 'pending')
    expect([b.state, c.state]).toEqual(['resolved', 'resolved'])
    expect(bridge.status.type).toBe('connected')
    expect(broker.connections).toBe(1)
  })

  it('PUBACKs cut byte by byte across TCP chunks settle the right publishes, in any order', async () => {
    const broker = await hostileBroker()
    const bridge = createMqttBridge({ url: broker.url, deviceId: 'hostile-2' })
    cleanup(() => broker.close(), () => bridge.close({ drainMs: 50 }))
    await bridge.connect()
    const t = [0, 1, 2, 3].map((i) => track(bridge.publish(`h/s${i}`, text(String(i)), { callerResends: true })))
    await until(() => broker.seen.length === 4)
    // PUBACKs of #2 and #0, each byte in a chunk of its own; between them a PINGRESP, also cut.
    await broker.trickle([...puback(broker.seen[2]!.id), 0xd0, 0x00, ...puback(broker.seen[0]!.id)])
    await until(() => t[2]!.state !== 'pending' && t[0]!.state !== 'pending')
    await tick()
    expect(t.map((x) => x.state)).toEqual(['resolved', 'pending', 'resolved', 'pending'])
    // A PUBACK whose first byte ends one chunk and whose rest comes with the next PUBACK whole.
    broker.write([0x40])
    await tick(20)
    broker.write([0x02, broker.seen[1]!.id >> 8, broker.seen[1]!.id & 0xff, ...puback(broker.seen[3]!.id)])
    await until(() => t.every((x) => x.state !== 'pending'))
    expect(t.map((x) => x.state)).toEqual(['resolved', 'resolved', 'resolved', 'resolved'])
    expect(bridge.status.type).toBe('connected')
    expect(broker.connections).toBe(1)
  })

  it('a PUBACK for the id MQTT.js used settles the MQTT.js publish only, and a direct one is not taken for it', async () => {
    const broker = await hostileBroker()
    const bridge = createMqttBridge({ url: broker.url, deviceId: 'hostile-3' })
    cleanup(() => broker.close(), () => bridge.close({ drainMs: 50 }))
    await bridge.connect()
    const viaLib = track(bridge.publish('h/lib', text('lib'))) // MQTT.js writes this one
    const direct = track(bridge.publish('h/direct', text('direct'), { callerResends: true }))
    await until(() => broker.seen.length === 2)
    const lib = broker.seen.find((p) => p.topic === 'h/lib')!
    const dir = broker.seen.find((p) => p.topic === 'h/direct')!
    expect(lib.id).not.toBe(dir.id)
    await broker.trickle(puback(lib.id))
    await until(() => viaLib.state !== 'pending')
    await tick()
    expect([viaLib.state, direct.state]).toEqual(['resolved', 'pending'])
    broker.write(puback(dir.id))
    await until(() => direct.state !== 'pending')
    expect(direct.state).toBe('resolved')
  })

  it('malformed PUBACKs do not settle a direct publish as delivered; a lost link rejects it and the device goes on', async () => {
    const broker = await hostileBroker()
    const bridge = createMqttBridge({ url: broker.url, deviceId: 'hostile-4', reconnect: { initialMs: 20, maxMs: 50 } })
    cleanup(() => broker.close(), () => bridge.close({ drainMs: 50 }))
    const errors: unknown[] = []
    const onErr = (e: unknown): number => errors.push(e)
    process.on('uncaughtException', onErr)
    cleanup(() => process.off('uncaughtException', onErr))
    await bridge.connect()
    const p = track(bridge.publish('h/m', text('m'), { callerResends: true }))
    await until(() => broker.seen.length === 1)
    const id = broker.seen[0]!.id
    // MQTT 3.1.1 PUBACK with a body of 3 bytes; one with a body of 1 byte; one of 0.
    broker.write([0x40, 0x03, id >> 8, id & 0xff, 0x00])
    broker.write([0x40, 0x01, id >> 8])
    broker.write([0x40, 0x00])
    await tick(150)
    expect(p.state).not.toBe('resolved')
    // Half a PUBACK, then the link goes.
    if (p.state === 'pending' && bridge.status.type === 'connected') {
      broker.write([0x40, 0x02, id >> 8])
      await tick(20)
      broker.cut()
    }
    await until(() => p.state !== 'pending', 5_000)
    expect(p.state).toBe('rejected')
    await until(() => bridge.status.type === 'connected', 5_000)
    const q = track(bridge.publish('h/after', text('after'), { callerResends: true }))
    await until(() => broker.seen.some((s) => s.topic === 'h/after'))
    broker.write(puback(broker.seen.find((s) => s.topic === 'h/after')!.id))
    await until(() => q.state !== 'pending')
    expect(q.state).toBe('resolved')
    expect(errors).toEqual([])
  })

  it('MQTT 5: an outbox entry the broker refuses stays in the outbox and is sent again after a reconnect; none is lost', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-hostile-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    let refuse = true
    // Refuses entry 3 (reason code 0x87, not authorized) while `refuse`; acknowledges the rest.
    const broker = await hostileBroker({
      autoAck: (p, level) => (p.qos === 1 ? Buffer.from(level === 5 ? [0x40, 0x04, p.id >> 8, p.id & 0xff, refuse && p.payload === '3' ? 0x87 : 0x00, 0x00] : puback(p.id)) : undefined),
    })
    cleanup(() => broker.close())
    const db = openDeviceDatabase({ path: path.join(dir, 'dev.db') })
    cleanup(() => db.close())
    const outbox = createSqliteOutbox(db)
    for (let i = 1; i <= 6; i++) outbox.append({ stream: 'events', topic: 'h/ev', frame: Buffer.from(String(i)), retain: false })
    const bridge = createMqttBridge({ url: broker.url, deviceId: 'hostile-5', protocolVersion: 5, reconnect: { initialMs: 20, maxMs: 50 } })
    cleanup(() => bridge.close({ drainMs: 50 }))
    const pump = createOutboxPump({ outbox, bridge, log: pino({ level: 'silent' }) })
    cleanup(() => pump.stop(50))
    await bridge.connect()
    await until(() => broker.seen.filter((s) => s.topic === 'h/ev').length >= 6)
    await tick(150)
    // 1, 2, 4, 5, 6 acknowledged and gone; 3 refused and kept.
    expect(outbox.stats().entries).toBe(1)
    expect(outbox.peek(0, 10).map((e) => Buffer.from(e.frame).toString())).toEqual(['3'])
    // The broker takes it on the next connection.
    refuse = false
    broker.cut()
    await until(() => outbox.stats().entries === 0, 5_000)
    const firstConn = broker.seen.filter((s) => s.conn === 1).map((s) => s.payload)
    expect(firstConn).toEqual(['1', '2', '3', '4', '5', '6'])
    expect(broker.seen.filter((s) => s.conn > 1).map((s) => s.payload)).toContain('3')
  })
})
