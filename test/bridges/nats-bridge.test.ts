// The Bridge port suite, the runtime-level bridge suite and NATS-specific behaviour of the NATS
// bridge (runtime/bridges/nats/), over real nats-servers: a private one per test where connections
// are cut or the server restarts, and the shared one on 127.0.0.1:4222 otherwise (a subject
// prefix and a stream of its own per test, deleted afterwards).
import { randomBytes } from 'node:crypto'
import { connect } from '@nats-io/transport-node'
import { jetstreamManager } from '@nats-io/jetstream'
import { describe, expect, it } from 'vitest'
import { createNatsBridge, type NatsBridgeOptions } from '../../runtime/bridges/nats/nats-bridge.js'
import { escapeLevel, filterToSubjects, subjectToTopic, topicToSubject, unescapeLevel } from '../../runtime/bridges/nats/nats-subjects.js'
import { ErrorCode, isOutpostError } from '../../runtime/errors.js'
import type { Bridge, InboundFrame } from '../../runtime/ports/bridge.js'
import { createRuntime } from '../../runtime/index.js'
import { counterContract, counterService } from '../fixtures/services.js'
import { describeBridgeContract } from '../contracts/bridge.contract.js'
import { describeBridgePortContract } from '../contracts/bridge-port.contract.js'
import { caught } from '../helpers/caught.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { startNatsMqtt } from '../helpers/nats-mqtt.js'
import { tcpProxy } from '../helpers/tcp-proxy.js'
import { until } from '../helpers/wait.js'

const SHARED_NATS = process.env.OUTPOST_NATS_URL ?? 'nats://127.0.0.1:4222'
const fast = { initialMs: 50, maxMs: 200 }
const asNats = (url: string): string => url.replace(/^mqtt:/, 'nats:')

/** A subject prefix and stream of their own on the shared server; `dispose` deletes the stream. */
async function sharedSpace(): Promise<{ subjectPrefix: string; stream: string; dispose(): Promise<void> }> {
  const run = `t${randomBytes(4).toString('hex')}`
  const stream = `OUTPOST_TEST_${run}`
  return {
    subjectPrefix: run,
    stream,
    async dispose() {
      const nc = await connect({ servers: SHARED_NATS })
      const jsm = await jetstreamManager(nc)
      await jsm.streams.delete(stream).catch(() => false)
      await nc.close()
    },
  }
}

describeBridgePortContract('nats', {
  lossy: true,
  // NATS core keeps nothing for an absent subscriber and never sends a frame again.
  capabilities: { redeliversAfterLoss: false },
  async createNetwork() {
    const nats = await startNatsMqtt()
    const proxy = await tcpProxy(nats.natsUrl)
    return {
      prefix: 'ob',
      bridge: (id, o) =>
        createNatsBridge({ servers: o?.cuttable === true ? asNats(proxy.url) : nats.natsUrl, deviceId: id, maxPayloadBytes: o?.maxPayloadBytes, reconnect: fast, willCheckMs: 300 }),
      cut: () => proxy.cut(),
      brokerDown: () => nats.stop(),
      brokerUp: () => nats.restart(),
      dispose: async () => {
        await proxy.close()
        await nats.dispose()
      },
    }
  },
})

describeBridgeContract('nats', {
  async createNetwork() {
    const space = await sharedSpace()
    const bridges: Bridge[] = []
    return {
      bridge: (deviceId) => {
        const b = createNatsBridge({ servers: SHARED_NATS, deviceId, subjectPrefix: space.subjectPrefix, stream: space.stream, willCheckMs: 500 })
        bridges.push(b)
        return b
      },
      dispose: async () => {
        await Promise.all(bridges.map((b) => b.close({ drainMs: 100 })))
        await space.dispose()
      },
    }
  },
})

/** What `fn` throws; fails the test when it returns. */
const thrown = (fn: () => unknown): unknown => {
  try {
    fn()
  } catch (err) {
    return err
  }
  throw new Error('expected a throw')
}
const text = (s: string): Uint8Array => new TextEncoder().encode(s)
const read = (f: InboundFrame): string => new TextDecoder().decode(f.payload)

describe('NATS bridge: topics as subjects', () => {
  it('escapes levels NATS cannot carry so that they round-trip, and leaves ordinary levels alone', () => {
    const levels = ['plain', '1.0', 'a b', '*', '>', 'x*y', 'p>q', '100%', '%2E', '', 'tab\there', 'nbsp\u00a0x', 'emoji😀', 'dev-1_ok']
    for (const l of levels) {
      const token = escapeLevel(l)
      expect(token).not.toMatch(/[.\s]/)
      expect(token === '*' || token === '>').toBe(false)
      expect(unescapeLevel(token)).toBe(l)
    }
    expect(escapeLevel('dev-1_ok')).toBe('dev-1_ok')
    expect(escapeLevel('1.0')).toBe('1%2E0')
    const topic = 'ob/dev.1/evt/s/1.0/ e'
    expect(subjectToTopic(topicToSubject(topic))).toBe(topic)
    expect(subjectToTopic(topicToSubject(topic, ['site', 'x']), ['site', 'x'])).toBe(topic)
    expect(subjectToTopic('other.ob.d', ['site'])).toBeUndefined()
    expect(topicToSubject('ob/a//b')).toBe('ob.a.%.b')
  })

  it("maps + to *, a trailing # to >, and MQTT's a/# to both a and a.>", () => {
    expect(filterToSubjects('ob/+/status')).toEqual(['ob.*.status'])
    expect(filterToSubjects('ob/#')).toEqual(['ob', 'ob.>'])
    expect(filterToSubjects('#')).toEqual(['>'])
    expect(filterToSubjects('#', ['p'])).toEqual(['p', 'p.>'])
    expect(filterToSubjects('ob/+/evt/s/1.0/+')).toEqual(['ob.*.evt.s.1%2E0.*'])
    for (const bad of ['ob/#/x', 'ob/a+/b', 'ob/a#', '']) expect(isOutpostError(thrown(() => filterToSubjects(bad)), ErrorCode.INVALID_TOPIC_LEVEL)).toBe(true)
    for (const bad of ['ob/+/x', 'ob/#', '']) expect(isOutpostError(thrown(() => topicToSubject(bad)), ErrorCode.INVALID_TOPIC_LEVEL)).toBe(true)
  })
})

describe('NATS bridge over nats-server', () => {
  const cleanup = cleanupAfterEach()
  const open = async (o: Partial<NatsBridgeOptions> & { deviceId: string }): Promise<Bridge> => {
    const b = createNatsBridge({ servers: SHARED_NATS, reconnect: fast, ...o })
    cleanup(() => b.close({ drainMs: 100 }))
    await b.connect()
    return b
  }
  const space = async (): Promise<{ subjectPrefix: string; stream: string }> => {
    const s = await sharedSpace()
    cleanup(() => s.dispose())
    return { subjectPrefix: s.subjectPrefix, stream: s.stream }
  }

  it('carries frames and retained frames on topics with escaped levels, and a/# also matches a itself', async () => {
    const sp = await space()
    const a = await open({ deviceId: 'pub', ...sp })
    const b = await open({ deviceId: 'sub', ...sp })
    const exact: InboundFrame[] = []
    const wide: InboundFrame[] = []
    await b.subscribe('ob/+/evt/s/1.0/+', (f) => void exact.push(f))
    await b.subscribe('ob/#', (f) => void wide.push(f))
    await a.publish('ob/d.1/evt/s/1.0/a b', text('dotted'))
    await a.publish('ob', text('root'))
    await until(() => exact.length === 1 && wide.length === 2)
    expect(exact.map((f) => [f.topic, read(f)])).toEqual([['ob/d.1/evt/s/1.0/a b', 'dotted']])
    expect(wide.map((f) => f.topic).sort()).toEqual(['ob', 'ob/d.1/evt/s/1.0/a b'])
    await a.publish('ob/d.1/status', text('here'), { retain: true })
    const late: InboundFrame[] = []
    const c = await open({ deviceId: 'late', ...sp })
    await c.subscribe('ob/+/status', (f) => void late.push(f))
    await until(() => late.length === 1)
    expect(late.map((f) => [f.topic, read(f), f.retained])).toEqual([['ob/d.1/status', 'here', true]])
    expect(isOutpostError(await caught(a.publish('ob/+/x', text('no'))), ErrorCode.INVALID_TOPIC_LEVEL)).toBe(true)
    expect(isOutpostError(await caught(a.subscribe('ob/#/x', () => {})), ErrorCode.INVALID_TOPIC_LEVEL)).toBe(true)
  })

  it('shares one round trip among the publishes of a tick and settles each of them', async () => {
    const sp = await space()
    const a = await open({ deviceId: 'pub', ...sp })
    const b = await open({ deviceId: 'sub', ...sp })
    const got: InboundFrame[] = []
    await b.subscribe('ob/batch/x', (f) => void got.push(f))
    const sent = Array.from({ length: 500 }, (_, i) => String(i))
    await Promise.all(sent.map((s) => a.publish('ob/batch/x', text(s))))
    await until(() => got.length === sent.length)
    expect(got.map(read)).toEqual(sent)
  })

  it('reconnects after the server restarts: subscriptions back, retained frames handed over again, publishes taken', async () => {
    const nats = await startNatsMqtt()
    cleanup(() => nats.dispose())
    const a = await open({ servers: nats.natsUrl, deviceId: 'pub' })
    const b = await open({ servers: nats.natsUrl, deviceId: 'sub' })
    await a.publish('ob/pub/status', text('online'), { retain: true })
    const got: InboundFrame[] = []
    await b.subscribe('ob/+/status', (f) => void got.push(f))
    await until(() => got.length === 1)
    await nats.restart()
    await until(() => a.status.type === 'connected' && b.status.type === 'connected' && got.length === 2, 15_000)
    // The stream is on disk: the retained frame survived the restart and came again.
    expect(got.map((f) => [f.topic, read(f), f.retained])).toEqual([
      ['ob/pub/status', 'online', true],
      ['ob/pub/status', 'online', true],
    ])
    await a.publish('ob/pub/status', text('live'))
    await until(() => got.length === 3)
    expect([read(got[2]!), got[2]!.retained]).toEqual(['live', false])
  })

  it('rejects connect with BRIDGE_UNAVAILABLE when the first attempt fails, and connects once the server is reachable', async () => {
    const sp = await space()
    const proxy = await tcpProxy(SHARED_NATS)
    cleanup(() => proxy.close())
    await proxy.down()
    const b = createNatsBridge({ servers: asNats(proxy.url), deviceId: 'early', reconnect: fast, ...sp })
    cleanup(() => b.close({ drainMs: 100 }))
    const seen: string[] = []
    b.onStatus((s) => seen.push(s.type))
    expect(isOutpostError(await caught(b.connect()), ErrorCode.BRIDGE_UNAVAILABLE)).toBe(true)
    await until(() => seen.includes('reconnecting'))
    await proxy.up()
    await b.connect()
    expect(b.status.type).toBe('connected')
    expect(seen.slice(0, 3)).toEqual(['connecting', 'reconnecting', 'connecting'])
  })

  it('refuses a subscription the server denies with NOT_AUTHORIZED and a frame over max_payload with FRAME_TOO_LARGE', async () => {
    const user = { user: 'dev', password: 'secret-pw', permissions: { subscribe: { deny: ['ob.secret', 'ob.secret.>'] } } }
    const nats = await startNatsMqtt({ users: [user], extra: ['max_payload: 4096'] })
    cleanup(() => nats.dispose())
    const b = await open({ servers: nats.natsUrl, deviceId: 'limited', user: 'dev', pass: 'secret-pw' })
    expect(isOutpostError(await caught(b.subscribe('ob/secret/#', () => {})), ErrorCode.NOT_AUTHORIZED)).toBe(true)
    expect(isOutpostError(await caught(b.publish('ob/big/x', new Uint8Array(5_000))), ErrorCode.FRAME_TOO_LARGE)).toBe(true)
    // The connection is still good for what the user may do.
    const got: InboundFrame[] = []
    await b.subscribe('ob/open/x', (f) => void got.push(f))
    await b.publish('ob/open/x', text('fine'))
    await until(() => got.length === 1)
    expect(read(got[0]!)).toBe('fine')
  })

  it("has a watcher publish the last will of a device that lost its connection and did not come back", async () => {
    const nats = await startNatsMqtt()
    cleanup(() => nats.dispose())
    const proxy = await tcpProxy(nats.natsUrl)
    cleanup(() => proxy.close())
    const watcher = await open({ servers: nats.natsUrl, deviceId: 'watcher', willCheckMs: 200 })
    const wills: InboundFrame[] = []
    await watcher.subscribe('ob/+/status', (f) => void wills.push(f))
    const gone = createNatsBridge({ servers: asNats(proxy.url), deviceId: 'gone', reconnect: fast, willCheckMs: 0 })
    cleanup(() => gone.close({ drainMs: 100 }))
    gone.setWill('ob/gone/status', text('offline'), { retain: true })
    await gone.connect()
    await gone.publish('ob/gone/status', text('online'), { retain: true })
    await until(() => wills.length === 1)
    await proxy.down() // the device's network is gone for good
    await until(() => wills.length === 2, 10_000)
    expect(wills.map((f) => [f.topic, read(f)])).toEqual([
      ['ob/gone/status', 'online'],
      ['ob/gone/status', 'offline'],
    ])
    // Published retained: a device that starts now learns of it too.
    const late: InboundFrame[] = []
    const newcomer = await open({ servers: nats.natsUrl, deviceId: 'newcomer', willCheckMs: 0 })
    await newcomer.subscribe('ob/gone/status', (f) => void late.push(f))
    await until(() => late.length === 1)
    expect([read(late[0]!), late[0]!.retained]).toEqual(['offline', true])
  })

  it('lets a runtime see a device whose network died go offline (its will), and find it again when it is back', async () => {
    const nats = await startNatsMqtt()
    cleanup(() => nats.dispose())
    const proxy = await tcpProxy(nats.natsUrl)
    cleanup(() => proxy.close())
    const device = createRuntime({
      bridge: createNatsBridge({ servers: asNats(proxy.url), deviceId: 'dev-a', reconnect: fast, willCheckMs: 0 }),
      services: [counterService({ executions: 0, slowAborted: 0, events: [] })],
    })
    cleanup(() => device.stop({ drainMs: 100 }))
    await device.start({ waitForBroker: true })
    const caller = createRuntime({ bridge: createNatsBridge({ servers: nats.natsUrl, deviceId: 'caller', willCheckMs: 200 }), discoveryWaitMs: 2_000 })
    cleanup(() => caller.stop({ drainMs: 100 }))
    await caller.start({ waitForBroker: true })
    await until(() => caller.directory.instances('counter', '1').length === 1)
    await proxy.down()
    await until(() => caller.directory.instances('counter', '1').length === 0, 10_000)
    expect(caller.directory.deviceState('dev-a')).not.toBe('live')
    await proxy.up()
    await until(() => caller.directory.instances('counter', '1').length === 1, 10_000)
    expect(await caller.client(counterContract).add({ deviceId: 'x', reading: 1, ts: 1 })).toEqual({ ok: true, n: 1 })
  })
})
