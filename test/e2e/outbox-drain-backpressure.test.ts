// Outside test (issue 12, direct publisher): the broker stops reading while an outbox of large
// frames drains, so the socket's buffers fill and the transport queues its PUBLISHes; the broker
// reads again (everything goes out in order), stops again, and the link is cut while writes wait.
// Every frame arrives byte for byte, first arrivals in order; the outbox ends empty.
import { randomBytes } from 'node:crypto'
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

const TOTAL = 1_500
const FRAME = 60_000

/** A broker (MQTT 3.1.1) that acknowledges each QoS 1 PUBLISH when read; it can stop reading. */
async function pausingBroker() {
  const got: Buffer[] = []
  const sockets = new Set<net.Socket>()
  let current: net.Socket | undefined
  let connections = 0
  const server = net.createServer((socket) => {
    sockets.add(socket)
    current = socket
    connections++
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    const chunks: Buffer[] = []
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk)
      let buf = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)
      chunks.length = 0
      for (;;) {
        let length = 0
        let mult = 1
        let at = 1
        let complete = false
        for (;;) {
          if (at >= buf.length) break
          const b = buf[at++]!
          length += (b & 0x7f) * mult
          mult *= 128
          if ((b & 0x80) === 0) {
            complete = true
            break
          }
        }
        if (!complete || buf.length < at + length) break
        const first = buf[0]!
        const body = buf.subarray(at, at + length)
        buf = buf.subarray(at + length)
        const type = first >> 4
        if (type === 1) socket.write(Buffer.from([0x20, 0x02, 0x00, 0x00]))
        else if (type === 12) socket.write(Buffer.from([0xd0, 0x00]))
        else if (type === 3) {
          const tl = body.readUInt16BE(0)
          const id = body.readUInt16BE(2 + tl)
          got.push(Buffer.from(body.subarray(4 + tl)))
          socket.write(Buffer.from([0x40, 0x02, id >> 8, id & 0xff]))
        }
      }
      if (buf.length > 0) chunks.push(buf)
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return {
    url: `mqtt://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    got,
    get connections() {
      return connections
    },
    reading(on: boolean): void {
      if (on) current!.resume()
      else current!.pause()
    },
    cut: () => current?.destroy(),
    async close(): Promise<void> {
      for (const s of sockets) s.destroy()
      await new Promise<void>((r) => server.close(() => r()))
    },
  }
}

describe('outbox drain under back-pressure', () => {
  const cleanup = cleanupAfterEach()

  it('queues writes while the broker does not read, sends them in order, and sends again after a cut', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-backpressure-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    const broker = await pausingBroker()
    cleanup(() => broker.close())
    const db = openDeviceDatabase({ path: path.join(dir, 'dev.db') })
    cleanup(() => db.close())
    const outbox = createSqliteOutbox(db, { limits: { events: { maxBytes: 1 << 30, policy: 'reject' } } })
    const frames: Buffer[] = []
    db.db.transaction(() => {
      for (let i = 1; i <= TOTAL; i++) {
        const f = randomBytes(FRAME)
        f.writeUInt32BE(i, 0)
        frames.push(f)
        outbox.append({ stream: 'events', topic: 'bp/ev', frame: f, retain: false })
      }
    })()
    const bridge = createMqttBridge({ url: broker.url, deviceId: 'bp-dev', reconnect: { initialMs: 20, maxMs: 50 }, keepaliveSec: 60 })
    cleanup(() => bridge.close({ drainMs: 50 }))
    const pump = createOutboxPump({ outbox, bridge, log: pino({ level: 'silent' }) })
    cleanup(() => pump.stop(50))
    await bridge.connect()
    const unique = (): Set<number> => new Set(broker.got.map((b) => b.readUInt32BE(0)))

    await until(() => broker.got.length >= 100, 10_000)
    broker.reading(false)
    await new Promise((r) => setTimeout(r, 500))
    const whilePaused = outbox.stats().entries
    expect(whilePaused).toBeGreaterThan(TOTAL - 400) // it stalls: the window is full and nothing is acknowledged
    broker.reading(true)
    await until(() => broker.got.length >= 700, 15_000)
    broker.reading(false)
    await new Promise((r) => setTimeout(r, 300))
    broker.cut()
    await until(() => outbox.stats().entries === 0, 30_000)
    expect(broker.connections).toBeGreaterThanOrEqual(2)

    const byN = new Map<number, Buffer>()
    for (const b of broker.got) if (!byN.has(b.readUInt32BE(0))) byN.set(b.readUInt32BE(0), b)
    expect(unique().size).toBe(TOTAL)
    const wrong = frames.filter((f, i) => !byN.get(i + 1)!.equals(f)).length
    expect(wrong).toBe(0)
    const firsts: number[] = []
    const had = new Set<number>()
    for (const b of broker.got) {
      const n = b.readUInt32BE(0)
      if (!had.has(n)) (had.add(n), firsts.push(n))
    }
    expect(firsts.filter((n, i) => i > 0 && n < firsts[i - 1]!)).toEqual([])
  }, 60_000)
})
