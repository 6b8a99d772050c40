// Replies encoded once (prepareReply) and published as they are (publishReply), over both
// transports: one semantics whether the transport moves bytes or hands values over.
import { describe, expect, it } from 'vitest'
import { createMemoryHub, createMemoryBridge } from '../../runtime/bridges/memory/memory-bridge.js'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { ErrorCode, isOutpostError } from '../../runtime/errors.js'
import { createMessenger, type Messenger } from '../../runtime/messaging/messenger.js'
import type { Bridge, InboundFrame } from '../../runtime/ports/bridge.js'
import type { SentReply } from '../../runtime/ports/inbox.js'
import { createEnvelopeCodec } from '../../runtime/wire/codec.js'
import { ENVELOPE_VERSION, type Envelope } from '../../runtime/wire/envelope.js'
import { bareAedes } from '../helpers/bare-aedes.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { until } from '../helpers/wait.js'
import { caught } from '../helpers/caught.js'

const codec = createEnvelopeCodec()
let seq = 0
const id = (): string => `01JREPLYFRAMETEST${String(++seq).padStart(9, '0')}`
const command = (src: string, target: string): Envelope => ({
  v: ENVELOPE_VERSION, kind: 'command', id: id(), src, inst: 'i1', at: Date.now(), service: 'echo', version: '1', name: 'say',
  target, replyTo: src, deadline: Date.now() + 5_000, payload: { text: 'hi' },
})
const replyTo = (cmd: Envelope, src: string, payload: unknown = { ok: true }): Envelope => ({
  v: ENVELOPE_VERSION, kind: 'reply', id: id(), src, inst: 'i2', at: Date.now(), corr: cmd.id, replyTo: cmd.replyTo, payload,
})

const networks: [string, boolean, () => Promise<{ bridge(deviceId: string): Bridge; dispose(): Promise<void> }>][] = [
  ['memory', true, async () => {
    const hub = createMemoryHub()
    return { bridge: (deviceId) => createMemoryBridge({ hub, deviceId }), dispose: async () => {} }
  }],
  ['mqtt over aedes', false, async () => {
    const broker = await bareAedes()
    return { bridge: (deviceId) => createMqttBridge({ url: broker.url, deviceId }), dispose: () => broker.close() }
  }],
]

describe.each(networks)('replies encoded once, over %s', (_name, fastPath, createNet) => {
  const cleanup = cleanupAfterEach()
  const setUp = async () => {
    const net = await createNet()
    cleanup(() => net.dispose())
    const messenger = async (deviceId: string): Promise<Messenger> => {
      const m = createMessenger({ bridge: net.bridge(deviceId) })
      cleanup(() => m.close({ drainMs: 50 }))
      await m.connect()
      return m
    }
    return { net, messenger }
  }

  it('prepares a reply for its topic, as a frame (a bytes transport) or as the envelope itself (the fast path)', async () => {
    const { messenger } = await setUp()
    const server = await messenger('server')
    const reply = replyTo(command('caller', 'server'), 'server')
    const prepared = server.prepareReply(reply)
    expect(prepared.topic).toBe(server.topics.topicOf(reply))
    if (fastPath) expect(prepared).toEqual({ topic: prepared.topic, envelope: reply })
    else expect(Buffer.from(prepared.frame!).equals(Buffer.from(codec.encode(reply)))).toBe(true)
  })

  it('publishes a kept frame byte for byte, twice alike, and the caller takes it as the reply to its request', async () => {
    const { net, messenger } = await setUp()
    const server = await messenger('server')
    const caller = await messenger('caller')
    // A transport of the caller's side that keeps the bytes of every reply to the caller.
    const tap = net.bridge('tap')
    cleanup(() => tap.close({ drainMs: 50 }))
    const tapped: InboundFrame[] = []
    await tap.subscribe(caller.topics.replyFilter('caller'), (f) => void tapped.push(f))
    await tap.connect()
    const cmd = command('caller', 'server')
    const reply = replyTo(cmd, 'server', { n: 42 })
    const kept: SentReply = { topic: server.topics.topicOf(reply), frame: codec.encode(reply) }
    const answered = caller.request(cmd)
    await server.publishReply(kept)
    expect(await answered).toEqual(reply)
    await server.publishReply(kept) // a repeat: the same bytes again (the caller counts it as late)
    await until(() => tapped.length === 2)
    for (const f of tapped) {
      expect(f.topic).toBe(kept.topic)
      expect(Buffer.from(f.payload).equals(Buffer.from(kept.frame!))).toBe(true)
    }
    await until(() => (caller.stats().dropped.LATE_REPLY ?? 0) === 1)
  })

  it('publishes a reply kept as an envelope (prepared, or without a topic) as publish would', async () => {
    const { messenger } = await setUp()
    const server = await messenger('server')
    const caller = await messenger('caller')
    const first = command('caller', 'server')
    const a = caller.request(first)
    await server.publishReply(server.prepareReply(replyTo(first, 'server', { n: 1 })))
    expect((await a).payload).toEqual({ n: 1 })
    const second = command('caller', 'server')
    const b = caller.request(second)
    await server.publishReply({ envelope: replyTo(second, 'server', { n: 2 }) })
    expect((await b).payload).toEqual({ n: 2 })
  })

  it('refuses to publish a reply before connect (BRIDGE_UNAVAILABLE) and after close (BRIDGE_CLOSED)', async () => {
    const { net } = await setUp()
    const idle = createMessenger({ bridge: net.bridge('idle') })
    const reply = replyTo(command('caller', 'idle'), 'idle')
    const kept: SentReply = { topic: idle.topics.topicOf(reply), frame: codec.encode(reply) }
    expect(isOutpostError(await caught(idle.publishReply(kept)), ErrorCode.BRIDGE_UNAVAILABLE)).toBe(true)
    expect(isOutpostError(await caught(idle.publishReply(idle.prepareReply(reply))), ErrorCode.BRIDGE_UNAVAILABLE)).toBe(true)
    await idle.close({ drainMs: 50 })
    expect(isOutpostError(await caught(idle.publishReply(kept)), ErrorCode.BRIDGE_CLOSED)).toBe(true)
  })
})
