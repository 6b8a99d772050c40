// The RabbitMQ target against the real broker on 127.0.0.1:5672 (guest/guest): confirms, what
// arrives in the bound queue, setup refusals, an unreachable broker, a link cut through a proxy.
import { randomBytes } from 'node:crypto'
import net from 'node:net'
import amqp, { type ChannelModel, type ConsumeMessage } from 'amqplib'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ErrorCode, isOutpostError } from '../../runtime/errors.js'
import { FORWARD_DEFAULTS, type RabbitTargetConfig } from '../../gateway/forward/forward-config.js'
import { dedupeKey, type ForwardMessage, type ForwardTarget, type SendResult } from '../../gateway/forward/target.js'
import { createRabbitTarget } from '../../gateway/forward/targets/rabbitmq-target.js'
import { caught } from '../helpers/caught.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { tcpProxy } from '../helpers/tcp-proxy.js'
import { freePort, until } from '../helpers/wait.js'

const RABBIT_URL = process.env.OUTPOST_RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672'
const cleanup = cleanupAfterEach()
let admin: ChannelModel

beforeAll(async () => {
  admin = await amqp.connect(RABBIT_URL)
  admin.on('error', () => {})
})
afterAll(async () => {
  await admin.close()
})

/** Fresh exchange and queue names for one test, deleted after it. */
function names(): { exchange: string; queue: string } {
  const suffix = randomBytes(5).toString('hex')
  const exchange = `outpost.test.events.${suffix}`
  const queue = `outpost.test.q.${suffix}`
  cleanup(async () => {
    const ch = await admin.createChannel()
    ch.on('error', () => {})
    await ch.deleteQueue(queue)
    await ch.deleteExchange(exchange)
    await ch.close()
  })
  return { exchange, queue }
}

function config(exchange: string, queue: string | undefined, over: Partial<RabbitTargetConfig> = {}): RabbitTargetConfig {
  return {
    type: 'rabbitmq',
    url: RABBIT_URL,
    exchange: { name: exchange, type: 'topic', create: true },
    ...(queue ? { queue: { name: queue, bindingKey: 'thermo-1.#' } } : {}),
    routingKey: FORWARD_DEFAULTS.rabbitRoutingKey,
    encoding: 'json',
    window: FORWARD_DEFAULTS.window,
    confirmTimeoutMs: FORWARD_DEFAULTS.confirmTimeoutMs,
    maxBytes: FORWARD_DEFAULTS.maxBytes,
    whenFull: 'drop-oldest',
    ...over,
  }
}

function target(name: string, cfg: RabbitTargetConfig): ForwardTarget {
  const t = createRabbitTarget(name, cfg)
  cleanup(() => t.close())
  return t
}

function message(i: number, over: Partial<ForwardMessage> = {}): ForwardMessage {
  return {
    seq: i,
    id: `evt-${i}`,
    device: 'thermo-1',
    subject: 'thermo-1.thermo.v1.reading',
    headers: { 'Outpost-Device': 'thermo-1', 'Outpost-Event': 'reading', 'Outpost-Seq': String(i) },
    contentType: 'application/json',
    body: new TextEncoder().encode(JSON.stringify({ i, celsius: 21.5 })),
    receivedAt: 1_700_000_000_000 + i * 1000,
    ...over,
  }
}

/** Sends `messages` keeping at most `window` unconfirmed, as the pump does; resolves with every result. */
async function sendWindowed(t: ForwardTarget, messages: ForwardMessage[], window: number): Promise<SendResult[]> {
  const results: SendResult[] = []
  let next = 0
  const lane = async (): Promise<void> => {
    while (next < messages.length) {
      const i = next++
      results[i] = await t.send(messages[i]!)
    }
  }
  await Promise.all(Array.from({ length: window }, lane))
  return results
}

/** Everything that arrives in `queue` (auto-ack), in arrival order. */
async function drainQueue(queue: string): Promise<ConsumeMessage[]> {
  const got: ConsumeMessage[] = []
  const ch = await admin.createChannel()
  ch.on('error', () => {})
  await ch.consume(queue, (m) => void (m && got.push(m)), { noAck: true })
  cleanup(() => ch.close().catch(() => {}))
  return got
}

/**
 * A proxy to the broker whose broker-to-client direction can be frozen: the link stays up, but
 * nothing (confirms, heartbeats, replies) comes back, like a stalled network path.
 */
async function freezableProxy(): Promise<{ url: string; freeze(): void; thaw(): void }> {
  const to = new URL(RABBIT_URL)
  const sockets = new Set<net.Socket>()
  let frozen = false
  const server = net.createServer((inbound) => {
    const outbound = net.connect({ host: to.hostname, port: Number(to.port) })
    for (const s of [inbound, outbound]) {
      sockets.add(s)
      s.on('error', () => {})
      s.on('close', () => sockets.delete(s))
    }
    inbound.pipe(outbound)
    outbound.on('data', (chunk: Buffer) => void (frozen || inbound.write(chunk)))
    inbound.on('close', () => outbound.destroy())
    outbound.on('close', () => inbound.destroy())
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  cleanup(
    () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy()
        server.close(() => r())
      }),
  )
  const { port } = server.address() as net.AddressInfo
  return { url: `amqp://guest:guest@127.0.0.1:${port}`, freeze: () => void (frozen = true), thaw: () => void (frozen = false) }
}

function codeOf(err: unknown): string | undefined {
  return isOutpostError(err) ? err.code : undefined
}

describe('RabbitMQ target', () => {
  it('confirms 1,000 messages sent with a window of 256 and they arrive in order with their properties', async () => {
    const { exchange, queue } = names()
    const t = target('cloud', config(exchange, queue))
    await t.connect()
    const messages = Array.from({ length: 1000 }, (_, i) => message(i))
    const results = await sendWindowed(t, messages, 256)
    expect(results).toHaveLength(1000)
    expect(results.every((r) => r.duplicate === false)).toBe(true)

    const got = await drainQueue(queue)
    await until(() => got.length >= 1000, 15_000)
    expect(got).toHaveLength(1000)
    expect(got.map((m) => m.properties.messageId)).toEqual(messages.map((m) => dedupeKey(m)))
    got.forEach((m, i) => {
      expect(m.fields.exchange).toBe(exchange)
      expect(m.fields.routingKey).toBe('thermo-1.thermo.v1.reading')
      expect(m.properties.deliveryMode).toBe(2)
      expect(m.properties.contentType).toBe('application/json')
      expect(m.properties.appId).toBe('outpost-gateway')
      expect(m.properties.timestamp).toBe(1_700_000_000 + i)
      expect(m.properties.headers).toEqual(messages[i]!.headers)
      expect(JSON.parse(m.content.toString('utf8'))).toEqual({ i, celsius: 21.5 })
    })
  })

  it('keeps call order when the channel write buffer fills (small frames, large bodies, all in flight)', async () => {
    const { exchange, queue } = names()
    // frameMax 4096 splits each 64 KiB body into 17 frames: 256 of them overflow amqplib's buffer.
    const t = target('cloud', config(exchange, queue, { url: `${RABBIT_URL}?frameMax=4096` }))
    await t.connect()
    const bodies = Array.from({ length: 256 }, (_, i) => Buffer.alloc(64 * 1024, i % 251))
    const messages = bodies.map((body, i) => message(i, { body, contentType: 'application/cbor' }))
    const results = await Promise.all(messages.map((m) => t.send(m)))
    expect(results).toHaveLength(256)

    const got = await drainQueue(queue)
    await until(() => got.length >= 256, 15_000)
    expect(got.map((m) => m.properties.messageId)).toEqual(messages.map((m) => dedupeKey(m)))
    got.forEach((m, i) => expect(m.content.equals(bodies[i]!)).toBe(true))
  })

  it('declares nothing with create: false and refuses a missing exchange with TARGET_REJECTED', async () => {
    const { exchange } = names()
    const t = target('cloud', config(exchange, undefined, { exchange: { name: exchange, type: 'topic', create: false } }))
    const downs: Error[] = []
    t.onDown((e) => downs.push(e))
    const err = await caught(t.connect())
    expect(codeOf(err)).toBe(ErrorCode.TARGET_REJECTED)
    expect((err as Error).message).toContain(exchange)
    expect((err as Error).message).toContain('NOT_FOUND')
    expect(downs).toEqual([])
    expect(codeOf(await caught(t.send(message(1))))).toBe(ErrorCode.TARGET_UNAVAILABLE)

    // Once the exchange exists, the same target connects and sends (connect is callable again).
    const ch = await admin.createChannel()
    await ch.assertExchange(exchange, 'fanout', { durable: false, autoDelete: false })
    await ch.close()
    await t.connect()
    expect(await t.send(message(2))).toEqual({ duplicate: false })
  })

  it('refuses an exchange that exists with another type with TARGET_REJECTED (PRECONDITION_FAILED)', async () => {
    const { exchange } = names()
    const ch = await admin.createChannel()
    await ch.assertExchange(exchange, 'direct', { durable: true })
    await ch.close()
    const t = target('cloud', config(exchange, undefined))
    const err = await caught(t.connect())
    expect(codeOf(err)).toBe(ErrorCode.TARGET_REJECTED)
    expect((err as Error).message).toContain('PRECONDITION_FAILED')
    expect((err as Error).message).toContain(exchange)
  })

  it('reports a port with no broker as TARGET_UNAVAILABLE', async () => {
    const { exchange } = names()
    const port = await freePort()
    const t = target('cloud', config(exchange, undefined, { url: `amqp://guest:guest@127.0.0.1:${port}` }))
    const err = await caught(t.connect())
    expect(codeOf(err)).toBe(ErrorCode.TARGET_UNAVAILABLE)
    expect((err as Error).message).toContain('ECONNREFUSED')
  })

  it('reports a server that accepts but never speaks AMQP as TARGET_UNAVAILABLE', async () => {
    const { exchange } = names()
    const silent = net.createServer(() => {})
    const held = new Set<net.Socket>()
    silent.on('connection', (s) => held.add(s))
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()))
    cleanup(() => new Promise<void>((r) => (held.forEach((s) => s.destroy()), silent.close(() => r()))))
    const { port } = silent.address() as net.AddressInfo
    const t = target('cloud', config(exchange, undefined, { url: `amqp://guest:guest@127.0.0.1:${port}`, confirmTimeoutMs: 300 }))
    expect(codeOf(await caught(t.connect()))).toBe(ErrorCode.TARGET_UNAVAILABLE)
  })

  it('takes a missing confirm for a lost link: the send rejects, onDown fires, connect() works again', async () => {
    const { exchange, queue } = names()
    const proxy = await freezableProxy()
    const t = target('cloud', config(exchange, queue, { url: proxy.url, confirmTimeoutMs: 500 }))
    const downs: Error[] = []
    t.onDown((e) => downs.push(e))
    await t.connect()
    expect(await t.send(message(0))).toEqual({ duplicate: false })
    proxy.freeze()
    const stalled = await caught(t.send(message(1)))
    expect(codeOf(stalled)).toBe(ErrorCode.TARGET_UNAVAILABLE)
    expect((stalled as Error).message).toContain('no confirm')
    expect(downs).toHaveLength(1)
    expect(codeOf(await caught(t.send(message(2))))).toBe(ErrorCode.TARGET_UNAVAILABLE)

    proxy.thaw()
    await t.connect()
    expect(await t.send(message(3))).toEqual({ duplicate: false })
    const got = await drainQueue(queue)
    await until(() => got.some((m) => m.properties.messageId === 'thermo-1/evt-3'))
    expect(downs).toHaveLength(1)
  })

  it('reports a wrong password as TARGET_REJECTED (ACCESS_REFUSED) without showing the password', async () => {
    const { exchange } = names()
    const t = target('cloud', config(exchange, undefined, { url: 'amqp://guest:wrong-secret@127.0.0.1:5672' }))
    const err = await caught(t.connect())
    expect(codeOf(err)).toBe(ErrorCode.TARGET_REJECTED)
    expect((err as Error).message).toContain('ACCESS_REFUSED')
    expect((err as Error).message).not.toContain('wrong-secret')
  })

  it('reports a vhost that does not exist as TARGET_REJECTED', async () => {
    const { exchange } = names()
    const t = target('cloud', config(exchange, undefined, { url: `${RABBIT_URL}/outpost-no-such-vhost-${randomBytes(4).toString('hex')}` }))
    const err = await caught(t.connect())
    expect(codeOf(err)).toBe(ErrorCode.TARGET_REJECTED)
    expect((err as Error).message).toContain('vhost')
  })

  it('rejects a message whose headers cannot be encoded with TARGET_REJECTED and keeps sending the rest', async () => {
    const { exchange, queue } = names()
    const t = target('cloud', config(exchange, queue))
    await t.connect()
    const huge = message(1, { headers: { 'Outpost-Device': 'x'.repeat(70_000) } })
    const [first, second, third] = await Promise.allSettled([t.send(message(0)), t.send(huge), t.send(message(2))])
    expect(first.status).toBe('fulfilled')
    expect(second.status === 'rejected' && codeOf(second.reason)).toBe(ErrorCode.TARGET_REJECTED)
    expect(third.status).toBe('fulfilled')
    const got = await drainQueue(queue)
    await until(() => got.length >= 2)
    expect(got.map((m) => m.properties.messageId)).toEqual(['thermo-1/evt-0', 'thermo-1/evt-2'])
  })

  it('fires onDown on a cut link, fails the sends in flight, and connects again once the broker is back', async () => {
    const { exchange, queue } = names()
    const proxy = await tcpProxy(RABBIT_URL.replace(/^amqp:\/\/[^@]*@/, 'amqp://'))
    cleanup(() => proxy.close())
    const t = target('cloud', config(exchange, queue, { url: proxy.url.replace(/^mqtt:/, 'amqp:') }))
    const downs: Error[] = []
    t.onDown((e) => downs.push(e))
    await t.connect()
    expect(await t.send(message(0))).toEqual({ duplicate: false })

    // Cut in the same tick as the sends: no confirm can come back for them.
    const inFlight = Promise.allSettled(Array.from({ length: 20 }, (_, i) => t.send(message(100 + i))))
    await proxy.down()
    const settled = await inFlight
    for (const s of settled) expect(s.status === 'rejected' && codeOf(s.reason)).toBe(ErrorCode.TARGET_UNAVAILABLE)
    await until(() => downs.length > 0)
    expect(downs).toHaveLength(1)
    expect(codeOf(downs[0])).toBe(ErrorCode.TARGET_UNAVAILABLE)

    // Down: connect fails as unavailable and sends fail at once.
    expect(codeOf(await caught(t.connect()))).toBe(ErrorCode.TARGET_UNAVAILABLE)
    expect(codeOf(await caught(t.send(message(1))))).toBe(ErrorCode.TARGET_UNAVAILABLE)

    await proxy.up()
    await t.connect()
    expect(await t.send(message(2))).toEqual({ duplicate: false })
    const got = await drainQueue(queue)
    await until(() => got.some((m) => m.properties.messageId === 'thermo-1/evt-2'))
    expect(got.map((m) => m.properties.messageId)).toContain('thermo-1/evt-0')
    expect(downs).toHaveLength(1)
  })

  it('close() fails the sends in flight without calling onDown', async () => {
    const { exchange } = names()
    const t = target('cloud', config(exchange, undefined))
    const downs: Error[] = []
    const off = t.onDown((e) => downs.push(e))
    await t.connect()
    const inFlight = Promise.allSettled(Array.from({ length: 10 }, (_, i) => t.send(message(i))))
    await t.close()
    const settled = await inFlight
    for (const s of settled) expect(s.status === 'rejected' && codeOf(s.reason)).toBe(ErrorCode.TARGET_UNAVAILABLE)
    expect(downs).toEqual([])
    off()
    // The target can be connected again after close().
    await t.connect()
    expect(await t.send(message(11))).toEqual({ duplicate: false })
  })
})
