// The messaging layer over frames-only bridges: envelopes, request/reply, drops, presence, resend.
import { describe, expect, it } from 'vitest'
import { createMemoryHub, createMemoryBridge } from '../../runtime/bridges/memory/memory-bridge.js'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { ErrorCode, isOutpostError } from '../../runtime/errors.js'
import { createMessenger, type InboundMessage, type Messenger } from '../../runtime/messaging/messenger.js'
import type { Bridge, InboundFrame } from '../../runtime/ports/bridge.js'
import { createEnvelopeCodec } from '../../runtime/wire/codec.js'
import { ENVELOPE_VERSION, type Envelope, type PresencePayload } from '../../runtime/wire/envelope.js'
import { bareAedes } from '../helpers/bare-aedes.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { tcpProxy } from '../helpers/tcp-proxy.js'
import { until } from '../helpers/wait.js'
import { caught } from '../helpers/caught.js'

const codec = createEnvelopeCodec()
let seq = 0
const id = (): string => `01JMESSENGERTEST${String(++seq).padStart(10, '0')}`

const command = (src: string, target: string, ms = 5_000): Envelope => ({
  v: ENVELOPE_VERSION, kind: 'command', id: id(), src, inst: 'i1', at: Date.now(), service: 'echo', version: '1', name: 'say',
  target, replyTo: src, deadline: Date.now() + ms, payload: { text: 'hi' },
})
const replyTo = (cmd: Envelope, src: string, payload: unknown = { ok: true }): Envelope => ({
  v: ENVELOPE_VERSION, kind: 'reply', id: id(), src, inst: 'i2', at: Date.now(), corr: cmd.id, replyTo: cmd.replyTo, payload,
})
const event = (src: string, name = 'said'): Envelope => ({
  v: ENVELOPE_VERSION, kind: 'event', id: id(), src, inst: 'i1', at: Date.now(), service: 'echo', version: '1', name, payload: { n: 1 },
})

/** A device answering every echo command addressed to it, with what `answer` makes of it. */
const serve = async (m: Messenger, answer: (cmd: Envelope) => Envelope | undefined = (cmd) => replyTo(cmd, m.deviceId)): Promise<Envelope[]> => {
  const seen: Envelope[] = []
  await m.subscribe(m.topics.commandFilter(m.deviceId, 'echo', '1'), (msg) => {
    seen.push(msg.envelope)
    const r = answer(msg.envelope)
    if (r !== undefined) void m.publish(r)
  })
  return seen
}

interface Net {
  bridge(deviceId: string): Bridge
}

const networks: [string, () => Promise<Net & { dispose(): Promise<void> }>][] = [
  [
    'memory',
    async () => {
      const hub = createMemoryHub()
      return { bridge: (deviceId) => createMemoryBridge({ hub, deviceId }), dispose: async () => {} }
    },
  ],
  [
    'mqtt over aedes',
    async () => {
      const broker = await bareAedes()
      return { bridge: (deviceId) => createMqttBridge({ url: broker.url, deviceId }), dispose: () => broker.close() }
    },
  ],
]

describe.each(networks)('messenger over %s', (_name, createNet) => {
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
    const raw = async (deviceId: string): Promise<Bridge> => {
      const b = net.bridge(deviceId)
      cleanup(() => b.close({ drainMs: 50 }))
      await b.connect()
      return b
    }
    return { net, messenger, raw }
  }

  it('matches a reply to its request, and takes it only from the device the command went to', async () => {
    const { messenger } = await setUp()
    const server = await messenger('server')
    const impostor = await messenger('impostor')
    const caller = await messenger('caller')
    await serve(server, (cmd) => {
      // Someone who saw the command answers first; the caller waits for the real reply.
      void impostor.publish(replyTo(cmd, 'impostor', { ok: false }))
      return replyTo(cmd, 'server')
    })
    const reply = await caller.request(command('caller', 'server'))
    expect(reply).toMatchObject({ kind: 'reply', src: 'server', payload: { ok: true } })
    await until(() => (caller.stats().dropped.LATE_REPLY ?? 0) === 1)
  })

  it('fails a request with TIMEOUT at its deadline, BRIDGE_UNAVAILABLE before connect, BRIDGE_CLOSED after close', async () => {
    const { net, messenger } = await setUp()
    const caller = await messenger('caller')
    expect(isOutpostError(await caught(caller.request(command('caller', 'nobody', 100))), ErrorCode.TIMEOUT)).toBe(true)
    const idle = createMessenger({ bridge: net.bridge('idle') })
    expect(isOutpostError(await caught(idle.request(command('idle', 'nobody'))), ErrorCode.BRIDGE_UNAVAILABLE)).toBe(true)
    expect(isOutpostError(await caught(idle.publish(event('idle'))), ErrorCode.BRIDGE_UNAVAILABLE)).toBe(true)
    await idle.close({ drainMs: 50 })
    expect(isOutpostError(await caught(idle.request(command('idle', 'nobody'))), ErrorCode.BRIDGE_CLOSED)).toBe(true)
    expect(isOutpostError(await caught(idle.publish(event('idle'))), ErrorCode.BRIDGE_CLOSED)).toBe(true)
  })

  it('drops frames that do not decode, claim another sender, or are empty where nobody takes a cleared message, counting each once', async () => {
    const { messenger, raw } = await setUp()
    const listener = await messenger('listener')
    const heard: InboundMessage[] = []
    // Two subscriptions match every event: a dropped frame is still counted once.
    await listener.subscribe(listener.topics.eventFilter({}), (m) => void heard.push(m))
    await listener.subscribe(listener.topics.eventFilter({ service: 'echo' }), () => {})
    const sender = await raw('rogue')
    await sender.publish('ob/rogue/evt/echo/1/said', new Uint8Array([0xff, 0xfe, 0x00]))
    await sender.publish('ob/rogue/evt/echo/1/said', codec.encode(event('someone-else')))
    await sender.publish('ob/rogue/evt/echo/1/said', new Uint8Array(0))
    await sender.publish('ob/rogue/evt/echo/1/said', codec.encode(event('rogue')))
    await until(() => heard.length === 1)
    expect(heard[0]!.envelope.src).toBe('rogue')
    const dropped = listener.stats().dropped
    expect(dropped).toEqual({ MALFORMED_FRAME: 2, SENDER_MISMATCH: 1 })
  })

  it('tells a subscription that asked of a cleared retained message, with the device its topic names', async () => {
    const { messenger, raw } = await setUp()
    const listener = await messenger('listener')
    const cleared: [string, string][] = []
    const presences: Envelope[] = []
    await listener.subscribe(listener.topics.presenceFilter(), (m) => void presences.push(m.envelope), { onCleared: (device, topic) => void cleared.push([device, topic]) })
    const other = await raw('other')
    await other.publish('ob/ghost/status', new Uint8Array(0), { retain: true })
    await until(() => cleared.length === 1)
    expect(cleared).toEqual([['ghost', 'ob/ghost/status']])
    expect(listener.stats().dropped).toEqual({})
  })

  it('sends its offline presence, naming its services, as a goodbye when it closes', async () => {
    const { messenger } = await setUp()
    const watcher = await messenger('watcher')
    const seen: Envelope[] = []
    await watcher.subscribe(watcher.topics.presenceFilter(), (m) => void seen.push(m.envelope))
    const services: PresencePayload['services'] = [{ name: 'echo', version: '1', commands: ['say'], events: [] }]
    const leaving = await messenger('leaving')
    leaving.declareServices(services)
    await leaving.close({ drainMs: 100 })
    await until(() => seen.some((e) => e.src === 'leaving'))
    const bye = seen.find((e) => e.src === 'leaving')!
    expect(bye).toMatchObject({ kind: 'presence', inst: leaving.instanceId, payload: { online: false, services } })
  })
})

describe('messenger over mqtt, when its connection is lost', () => {
  const cleanup = cleanupAfterEach()
  const setUp = async () => {
    const broker = await bareAedes()
    const proxy = await tcpProxy(broker.url)
    cleanup(() => broker.close(), () => proxy.close())
    const net = {
      bridge: (deviceId: string, cuttable = false) => createMqttBridge({ url: cuttable ? proxy.url : broker.url, deviceId, reconnect: { initialMs: 50, maxMs: 200 } }),
      cut: () => proxy.cut(),
    }
    const messenger = async (deviceId: string, cuttable = false): Promise<Messenger> => {
      const m = createMessenger({ bridge: net.bridge(deviceId, cuttable) })
      cleanup(() => m.close({ drainMs: 50 }))
      await m.connect()
      return m
    }
    return { net, messenger }
  }

  it('sends again, with the same id, a command still unanswered after its connection was lost', async () => {
    const { net, messenger } = await setUp()
    const server = await messenger('server')
    const caller = await messenger('caller', true)
    // The first copy goes unanswered (as if its reply were lost with the connection).
    const seen = await serve(server, (cmd) => (seen.length === 1 ? undefined : replyTo(cmd, 'server')))
    const call = caller.request(command('caller', 'server', 8_000))
    await until(() => seen.length === 1)
    net.cut()
    const reply = await call
    expect(reply.src).toBe('server')
    expect(seen.map((e) => e.id)).toEqual([seen[0]!.id, seen[0]!.id])
  })

  it('has the bridge publish its offline presence as last will when its connection is lost', async () => {
    const { net, messenger } = await setUp()
    const watcher = await messenger('watcher')
    const seen: Envelope[] = []
    await watcher.subscribe(watcher.topics.presenceFilter(), (m) => void seen.push(m.envelope))
    const services: PresencePayload['services'] = [{ name: 'echo', version: '1', commands: ['say'], events: [] }]
    const lost = createMessenger({ bridge: net.bridge('lost', true) })
    cleanup(() => lost.close({ drainMs: 50 }))
    lost.declareServices(services)
    await lost.connect()
    net.cut()
    await until(() => seen.some((e) => e.src === 'lost'), 10_000)
    expect(seen.find((e) => e.src === 'lost')).toMatchObject({ kind: 'presence', payload: { online: false, services } })
  })
})

describe('the memory fast path', () => {
  const cleanup = cleanupAfterEach()

  it('hands the envelope over as an object to a messenger, and as bytes to a subscriber of the bytes API', async () => {
    const hub = createMemoryHub()
    const sender = createMessenger({ bridge: createMemoryBridge({ hub, deviceId: 'sender' }) })
    const listener = createMessenger({ bridge: createMemoryBridge({ hub, deviceId: 'listener' }) })
    const rawBridge = createMemoryBridge({ hub, deviceId: 'raw' })
    cleanup(() => sender.close({ drainMs: 50 }), () => listener.close({ drainMs: 50 }), () => rawBridge.close({ drainMs: 50 }))
    await Promise.all([sender.connect(), listener.connect(), rawBridge.connect()])
    const objects: Envelope[] = []
    const frames: InboundFrame[] = []
    await listener.subscribe('ob/+/evt/#', (m) => void objects.push(m.envelope))
    await rawBridge.subscribe('ob/+/evt/#', (f) => void frames.push(f))
    const env = event('sender')
    await sender.publish(env)
    await until(() => objects.length === 1 && frames.length === 1)
    expect(objects[0]).toBe(env)
    const decoded = codec.decode(frames[0]!.payload)
    expect(decoded.ok && decoded.envelope).toEqual(env)
  })

  it('decodes bytes published on the bytes API (the outbox pump) for a messenger', async () => {
    const hub = createMemoryHub()
    const listener = createMessenger({ bridge: createMemoryBridge({ hub, deviceId: 'listener' }) })
    const rawBridge = createMemoryBridge({ hub, deviceId: 'raw' })
    cleanup(() => listener.close({ drainMs: 50 }), () => rawBridge.close({ drainMs: 50 }))
    await Promise.all([listener.connect(), rawBridge.connect()])
    const objects: Envelope[] = []
    await listener.subscribe('ob/+/evt/#', (m) => void objects.push(m.envelope))
    const env = event('raw')
    await rawBridge.publish('ob/raw/evt/echo/1/said', codec.encode(env))
    await until(() => objects.length === 1)
    expect(objects[0]).toEqual(env)
  })
})
