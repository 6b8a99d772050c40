// Outside test: a "broker" (a plain TCP server speaking just enough MQTT) accepts a device, then
// sends it a packet the device's MQTT parser refuses: a remaining length of five bytes (four is
// the most), an AUTH packet under MQTT 3.1.1, a packet of the reserved type 0. (A PUBLISH that
// announces more than the device takes is skipped as its bytes arrive, the connection kept:
// test/bridges/packet-size-guard tests; a broker that stops in the middle of one is caught by
// the keepalive.) The device used to log the error and keep the
// connection, hearing nothing more from it (MQTT has the receiver close it). It must close it and
// connect again; and a device given a broker URL that is not one stops with one typed line.
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { PROJECT_ROOT } from '../../build/project-root.js'
import { startProcess, type TestProcess } from '../helpers/device-process.js'
import { nextPacket } from '../helpers/mqtt-packets.js'
import { until } from '../helpers/wait.js'

const DISPLAY = path.join(PROJECT_ROOT, 'dist', 'devices', 'display', 'main.js')
const THERMO = path.join(PROJECT_ROOT, 'dist', 'devices', 'thermo', 'main.js')

/** A broker that answers CONNECT, SUBSCRIBE and PINGREQ, and sends `hostile` once, on the first connection, after its first SUBACK. */
async function brokerThatSends(hostile: number[]) {
  const connections: { closed: boolean }[] = []
  const sockets = new Set<net.Socket>()
  const server = net.createServer((socket) => {
    const conn = { closed: false }
    connections.push(conn)
    sockets.add(socket)
    socket.on('close', () => {
      conn.closed = true
      sockets.delete(socket)
    })
    socket.on('error', () => {})
    let buf: Buffer = Buffer.alloc(0)
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk])
      for (let p = nextPacket(buf); p !== undefined; p = nextPacket(buf)) {
        buf = p.rest
        const type = p.first >> 4
        if (type === 1) socket.write(Buffer.from([0x20, 0x02, 0x00, 0x00]))
        else if (type === 8) {
          const id = p.body.readUInt16BE(0)
          let n = 0
          for (let o = 2; o < p.body.length; o += 2 + p.body.readUInt16BE(o) + 1) n++
          socket.write(Buffer.from([0x90, 2 + n, id >> 8, id & 0xff, ...Array<number>(n).fill(1)]))
          if (connections.length === 1 && !conn.closed) socket.write(Buffer.from(hostile))
        } else if (type === 12) socket.write(Buffer.from([0xd0, 0x00]))
      }
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return {
    url: `mqtt://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    connections,
    async close(): Promise<void> {
      for (const s of sockets) s.destroy()
      await new Promise<void>((r) => server.close(() => r()))
    },
  }
}

const running: TestProcess[] = []
const brokers: { close(): Promise<void> }[] = []
afterEach(async () => {
  for (const p of running.splice(0)) await p.kill()
  for (const b of brokers.splice(0)) await b.close()
})

describe('a device sent a packet its MQTT parser refuses', () => {
  const cases: Record<string, number[]> = {
    'a remaining length of five bytes': [0x30, 0xff, 0xff, 0xff, 0xff, 0x01],
    'AUTH under MQTT 3.1.1': [0xf0, 0x00],
    'the reserved packet type 0': [0x00, 0x00],
  }
  for (const [what, bytes] of Object.entries(cases)) {
    it(`${what}: closes that connection, connects again, and stops cleanly on SIGTERM`, async () => {
      const broker = await brokerThatSends(bytes)
      brokers.push(broker)
      const device = startProcess(DISPLAY, [], { OUTPOST_MQTT_URL: broker.url, OUTPOST_DEVICE_ID: 'parse-error', OUTPOST_LOG_FORMAT: 'json' })
      running.push(device)
      await device.waitFor('"msg":"connected to the broker"', 15_000)
      await until(() => broker.connections[0]?.closed === true, 15_000, 'the device closes the connection that sent it')
      await until(() => broker.connections.length >= 2, 15_000, 'the device connects again')
      device.child.kill('SIGTERM')
      expect(await device.exited).toEqual({ code: 0, signal: null })
    }, 60_000)
  }
})

describe('a device given a broker URL that is not one', () => {
  it('stops with one INVALID_CONFIG line, not a stack, and exit code 1', async () => {
    const device = startProcess(DISPLAY, [], { OUTPOST_MQTT_URL: 'notaurl', OUTPOST_DEVICE_ID: 'bad-url', OUTPOST_LOG_FORMAT: 'json' })
    running.push(device)
    expect((await device.exited).code).toBe(1)
    const fatal = device.lines.filter((l) => l.includes('"level":60'))
    expect(fatal).toHaveLength(1)
    expect(fatal[0]).toContain('INVALID_CONFIG: broker url \\"notaurl\\" is not a URL')
    expect(device.lines.join('\n')).not.toMatch(/TypeError|\n\s+at /)
  }, 30_000)

  it('a device with a database stops the same way, before it makes its data folder', async () => {
    const base = mkdtempSync(path.join(tmpdir(), 'outpost-bad-url-'))
    try {
      const data = path.join(base, 'data')
      const device = startProcess(THERMO, [], { OUTPOST_MQTT_URL: 'mqtt//127.0.0.1:1883', OUTPOST_DEVICE_ID: 'bad-url', OUTPOST_LOG_FORMAT: 'json', OUTPOST_DATA_DIR: data })
      running.push(device)
      expect((await device.exited).code).toBe(1)
      const fatal = device.lines.filter((l) => l.includes('"level":60'))
      expect(fatal, device.lines.join('\n')).toHaveLength(1)
      expect(fatal[0]).toContain('INVALID_CONFIG: broker url')
      expect(existsSync(data) ? readdirSync(data) : 'no folder').toBe('no folder')
    } finally {
      rmSync(base, { recursive: true, force: true })
    }
  }, 30_000)
})
