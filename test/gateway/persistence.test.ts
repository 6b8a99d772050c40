// The SQLite broker persistence (gateway/persistence) on real files: what it keeps comes back
// whole from the file, a damaged file is moved aside, and a gateway drill keeps sessions.
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import path from 'node:path'
import mqtt from 'mqtt'
import { pino, type Logger } from 'pino'
import { describe, expect, it } from 'vitest'
import { defaultGatewayConfig } from '../../gateway/config/gateway-config.js'
import { startGateway } from '../../gateway/index.js'
import { createSqlitePersistence, type SqlitePersistence, type StoredPacket } from '../../gateway/persistence/sqlite-persistence.js'
import { caught } from '../helpers/caught.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { until } from '../helpers/wait.js'

const require = createRequire(import.meta.url)
const Packet = require('aedes-packet') as new (original: object, broker?: object) => StoredPacket

type Line = Record<string, unknown>
const logged = (): { lines: Line[]; logger: Logger } => {
  const lines: Line[] = []
  return { lines, logger: pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as Line) }) }
}
const all = async <T>(stream: AsyncIterable<T>): Promise<T[]> => {
  const out: T[] = []
  for await (const x of stream) out.push(x)
  return out
}

describe('SQLite broker persistence', () => {
  const cleanup = cleanupAfterEach()
  const folder = (): string => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-broker-db-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    return dir
  }
  const open = async (file: string, log?: Logger): Promise<SqlitePersistence> => {
    const p = createSqlitePersistence({ path: file, log })
    cleanup(() => p.destroy())
    await p.setup({ id: 'broker-1' })
    return p
  }

  it('gives back every field of what it kept after the file is closed and opened again', async () => {
    const file = path.join(folder(), 'broker.db')
    const broker = { id: 'broker-1', counter: 0 }
    const props = { userProperties: { a: 'b', many: ['1', '2'] }, correlationData: Buffer.from([0, 1, 2, 255]), contentType: 'application/cbor', responseTopic: 'r/1', payloadFormatIndicator: false }
    const payload = Buffer.from([0, 0xff, 0x80, 10, 13, 0])
    const first = await open(file)
    const client = { id: 'dev-1' }
    await first.addSubscriptions(client, [
      { topic: 'a/+', qos: 1, rh: 2, rap: true, nl: true, subscriptionIdentifier: 7 },
      { topic: 'b/#', qos: 0 },
    ] as never)
    const retained = new Packet({ topic: 'ob/dev-1/status', payload, qos: 1, retain: true, properties: props }, broker)
    await first.storeRetained(retained)
    const out = [1, 2, 3].map((i) => new Packet({ topic: `a/${i}`, payload: Buffer.from(`m${i}`), qos: 1, properties: props, messageExpiry: 1_900_000_000_000 + i }, broker))
    for (const p of out) await first.outgoingEnqueueCombi([{ clientId: client.id }], p)
    // The second goes out with packet id 42.
    await first.outgoingUpdate(client, Object.assign(new Packet(out[1]!), { messageId: 42 }))
    const incoming = Object.assign(new Packet({ topic: 'in/q2', payload, qos: 2, properties: props }, broker), { messageId: 9 })
    await first.incomingStorePacket(client, incoming)
    await first.putWill(client, { topic: 'ob/dev-1/status', payload: Buffer.from('gone'), qos: 1, retain: true, properties: props })
    await first.destroy()

    const again = await open(file)
    expect(await again.subscriptionsByClient(client)).toEqual([
      { topic: 'a/+', qos: 1, rh: 2, rap: true, nl: true, subscriptionIdentifier: 7 },
      { topic: 'b/#', qos: 0 },
    ])
    expect(await again.subscriptionsByTopic('a/x')).toMatchObject([{ clientId: 'dev-1', topic: 'a/+', qos: 1 }])
    expect(await again.countOffline()).toEqual({ subsCount: 1, clientsCount: 1 })
    const [kept] = await all<StoredPacket>(again.createRetainedStream('ob/+/status'))
    expect(kept).toMatchObject({ topic: 'ob/dev-1/status', qos: 1, retain: true, brokerId: 'broker-1', brokerCounter: retained.brokerCounter, properties: props })
    expect(Buffer.compare(kept!.payload as Buffer, payload)).toBe(0)
    const queue = await all<StoredPacket>(again.outgoingStream(client))
    expect(queue.map((p) => [p.topic, p.payload.toString(), p.messageId, p.brokerCounter, p.messageExpiry])).toEqual([
      ['a/1', 'm1', undefined, out[0]!.brokerCounter, 1_900_000_000_001],
      ['a/2', 'm2', 42, out[1]!.brokerCounter, 1_900_000_000_002],
      ['a/3', 'm3', undefined, out[2]!.brokerCounter, 1_900_000_000_003],
    ])
    expect(queue[1]!.properties).toEqual(props)
    const inc = await again.incomingGetPacket(client, { messageId: 9 } as StoredPacket)
    expect(inc).toMatchObject({ topic: 'in/q2', qos: 2, messageId: 9, properties: props })
    expect(await again.getWill(client)).toMatchObject({ topic: 'ob/dev-1/status', clientId: 'dev-1', brokerId: 'broker-1', properties: props })
    // Acknowledged, released, cleared: gone from the file too.
    expect((await again.outgoingClearMessageId(client, { messageId: 42 } as StoredPacket))?.topic).toBe('a/2')
    await again.incomingDelPacket(client, { messageId: 9 } as StoredPacket)
    await again.delWill(client)
    await again.storeRetained({ topic: 'ob/dev-1/status', payload: Buffer.alloc(0) })
    await again.cleanSubscriptions(client)
    await again.destroy()

    const third = await open(file)
    expect((await all<StoredPacket>(third.outgoingStream(client))).map((p) => p.topic)).toEqual(['a/1', 'a/3'])
    expect(await caught(third.incomingGetPacket(client, { messageId: 9 } as StoredPacket))).toBeInstanceOf(Error)
    expect(await third.getWill(client)).toBeUndefined()
    expect(await all(third.createRetainedStream('#'))).toEqual([])
    expect(await third.subscriptionsByClient(client)).toEqual([])
  })

  it('commits a burst of writes made in one turn together, each promise after its write is in the file', async () => {
    const file = path.join(folder(), 'broker.db')
    const broker = { id: 'broker-1', counter: 0 }
    const p = await open(file)
    const writes = Array.from({ length: 2_000 }, (_, i) => p.outgoingEnqueue({ clientId: `c${i % 10}` }, new Packet({ topic: `t/${i}`, payload: Buffer.from(String(i)), qos: 1 }, broker)))
    await Promise.all(writes)
    await p.destroy()
    const again = await open(file)
    const n = (await Promise.all(Array.from({ length: 10 }, (_, c) => all(again.outgoingStream({ id: `c${c}` }))))).reduce((s, q) => s + q.length, 0)
    expect(n).toBe(2_000)
  })

  it('moves a damaged file aside, says where, and starts empty', async () => {
    const dir = folder()
    const file = path.join(dir, 'broker.db')
    writeFileSync(file, Buffer.concat([Buffer.from('SQLite format 3\0'), Buffer.alloc(4096, 0xab)]))
    const { lines, logger } = logged()
    const p = await open(file, logger)
    expect(await all(p.createRetainedStream('#'))).toEqual([])
    const warned = lines.find((l) => String(l.msg).startsWith('broker database was damaged'))
    expect(warned).toMatchObject({ level: 40, path: file })
    expect(existsSync(String(warned!.movedTo))).toBe(true)
    expect(readdirSync(dir).some((f) => f.startsWith('broker.db.corrupt-'))).toBe(true)
    // The new file works.
    await p.storeRetained({ topic: 'x', payload: Buffer.from('y') })
    expect(await all(p.createRetainedStream('x'))).toHaveLength(1)
  })

  it('refuses a second gateway process on the same file with a typed error', async () => {
    const file = path.join(folder(), 'broker.db')
    await open(file)
    expect(await caught((async () => createSqlitePersistence({ path: file }))())).toMatchObject({ code: 'STORE_IN_USE' })
  })

  it('keeps sessions, queued QoS 1 messages and retained messages across a drill of the gateway', async () => {
    const dataDir = folder()
    const config = { ...defaultGatewayConfig(), dataDir, persistence: 'sqlite' as const }
    const gw = await startGateway({ config, port: 0, host: '127.0.0.1', logger: pino({ level: 'silent' }) })
    cleanup(() => gw.close())
    const url = gw.broker.url
    const sub = await mqtt.connectAsync(url, { clientId: 'drill-sub', clean: false, reconnectPeriod: 0 })
    await sub.subscribeAsync('d/#', { qos: 1 })
    await sub.endAsync()
    const pub = await mqtt.connectAsync(url, { clientId: 'drill-pub', reconnectPeriod: 0 })
    for (let i = 0; i < 50; i++) await pub.publishAsync('d/x', String(i), { qos: 1 })
    await pub.publishAsync('ob/dev-9/status', 'here', { qos: 1, retain: true })
    await pub.endAsync()
    // The broker is stopped and another started on the same persistence object, twice.
    await gw.interrupt(50)
    await gw.interrupt(50)
    const got = new Set<string>()
    const back = mqtt.connect(url, { clientId: 'drill-sub', clean: false, reconnectPeriod: 0 })
    cleanup(() => back.endAsync(true))
    back.on('message', (_t, b) => got.add(b.toString()))
    await until(() => got.size === 50, 30_000)
    const reader = await mqtt.connectAsync(url, { clientId: 'drill-reader', reconnectPeriod: 0 })
    cleanup(() => reader.endAsync(true))
    const statuses: string[] = []
    reader.on('message', (t, b, p) => p.retain && t === 'ob/dev-9/status' && statuses.push(b.toString()))
    await reader.subscribeAsync('ob/+/status', { qos: 1 })
    await until(() => statuses.length === 1, 30_000)
    expect(statuses).toEqual(['here'])
  }, 60_000)
})
