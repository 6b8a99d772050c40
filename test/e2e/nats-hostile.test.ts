// A runtime on the NATS bridge (runtime/bridges/nats/) attacked from outside: a plain NATS client
// (the official @nats-io/transport-node, not Outpost code) on the same nats-server publishes what
// any client there can — hostile frames on the runtime's subjects, forged replies to its requests,
// records in its JetStream stream, header blocks nats.js cannot read, subjects whose escapes decode
// to hostile levels — while a second runtime keeps calling the one under attack through that server.
// Each test has its own nats-server (test/helpers/nats-mqtt.ts) on free ports.
import { jetstream, jetstreamManager } from '@nats-io/jetstream'
import { connect, type MsgHdrs, type NatsConnection } from '@nats-io/transport-node'
import v8 from 'node:v8'
import vm from 'node:vm'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { createNatsBridge } from '../../runtime/bridges/nats/nats-bridge.js'
import { topicToSubject } from '../../runtime/bridges/nats/nats-subjects.js'
import type { Bridge, BridgeStatus, InboundFrame } from '../../runtime/ports/bridge.js'
import { createRuntime, type Runtime } from '../../runtime/index.js'
import { counterService, echoService, type Observed } from '../fixtures/services.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { sharedDag, SHARING, TAGGED } from '../helpers/frame-mutator.js'
import { startNatsMqtt, type NatsMqtt } from '../helpers/nats-mqtt.js'
import { commandSlots, eventSlots, FIELD, presenceSlots, rawDecoder, rawFrame, rawId, replySlots } from '../helpers/raw-wire.js'
import { tcpProxy } from '../helpers/tcp-proxy.js'
import { until } from '../helpers/wait.js'

const MiB = 1024 * 1024
const fast = { initialMs: 50, maxMs: 200 }
const te = new TextEncoder()
const td = new TextDecoder()
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
// A full collection before a heap is measured (the test process is not started with --expose-gc).
v8.setFlagsFromString('--expose-gc')
const gc = vm.runInNewContext('gc') as () => void
const asNats = (url: string): string => url.replace(/^mqtt:/, 'nats:')

/**
 * A header block nats.js cannot parse (a space in a header name): reading such a message's headers
 * throws. The client's header builder refuses to write one, so the block goes out as bytes, as
 * any other client could send it.
 */
const unreadable = { encode: () => te.encode('NATS/1.0\r\nBad Key: 1\r\n\r\n') } as unknown as MsgHdrs

/** A command to the victim's counter service, written by hand. */
const addFrame = (o: { src?: string; replyTo?: string; id?: string; n?: number } = {}): Uint8Array =>
  rawFrame(commandSlots({ id: o.id, src: o.src ?? 'attacker', service: 'counter', name: 'add', replyTo: o.replyTo, target: 'victim', payload: { deviceId: 'attacker', reading: o.n ?? 1, ts: 1 } }))
const ADD = 'ob.attacker.cmd.victim.counter.1.add'

interface Scene {
  nats: NatsMqtt
  victim: Runtime
  /** The victim's bridge (its status). */
  victimBridge: Bridge
  caller: Runtime
  observed: Observed
  attacker: NatsConnection
  /** Lines the victim logged so far. */
  lines(): number
  tail(): string
  /** The caller calls the victim's `counter.add`: its result, or the error code. */
  call(timeoutMs?: number): Promise<{ ok: true; n: number } | string>
}

describe('a runtime on the NATS bridge attacked by a plain NATS client', () => {
  const cleanup = cleanupAfterEach()

  const scene = async (o: { victimServers?: (nats: NatsMqtt) => Promise<string>; willCheckMs?: number; services?: 'relay' } = {}): Promise<Scene> => {
    const nats = await startNatsMqtt()
    cleanup(() => nats.dispose())
    const logged: string[] = []
    const logger = pino({ level: 'info' }, { write: (s: string) => void logged.push(s) })
    const observed: Observed = { executions: 0, slowAborted: 0, events: [] }
    const servers = o.victimServers === undefined ? nats.natsUrl : await o.victimServers(nats)
    const victimBridge = createNatsBridge({ servers, deviceId: 'victim', logger, reconnect: fast, willCheckMs: o.willCheckMs ?? 0 })
    const victim = createRuntime({
      bridge: victimBridge,
      services: [counterService(observed)],
      logger,
      discoveryWaitMs: 2_000,
    })
    cleanup(() => victim.stop({ drainMs: 100 }))
    await victim.start({ waitForBroker: true })
    const caller = createRuntime({
      bridge: createNatsBridge({ servers: nats.natsUrl, deviceId: 'caller', reconnect: fast, willCheckMs: 0 }),
      services: o.services === 'relay' ? [echoService()] : [],
      discoveryWaitMs: 5_000,
    })
    cleanup(() => caller.stop({ drainMs: 100 }))
    await caller.start({ waitForBroker: true })
    const attacker = await connect({ servers: nats.natsUrl, name: 'attacker', reconnectTimeWait: 50, maxReconnectAttempts: -1 })
    cleanup(() => attacker.close())
    const call = (timeoutMs = 5_000): Promise<{ ok: true; n: number } | string> =>
      caller.invoke({ service: 'counter', command: 'add' }, { deviceId: 'caller', reading: 1, ts: 1 }, { device: 'victim', timeoutMs }).then(
        (r) => r as { ok: true; n: number },
        (err: { code?: string }) => err.code ?? String(err),
      )
    expect(await call()).toEqual({ ok: true, n: 1 })
    return { nats, victim, victimBridge, caller, observed, attacker, lines: () => logged.length, tail: () => logged.slice(-8).join(''), call }
  }

  /** Runs `send` in a loop (a batch, then a flush) until the returned stop is called. */
  const flood = (attacker: NatsConnection, send: (i: number) => void): { sent(): number; stop(): Promise<void> } => {
    let n = 0
    let stopped = false
    const loop = (async () => {
      while (!stopped) {
        try {
          for (let k = 0; k < 100; k++) send(n++)
          await attacker.flush()
        } catch {
          await sleep(20) // the attacker's own connection is down (server restart): try again
        }
      }
    })()
    return {
      sent: () => n,
      stop: async () => {
        stopped = true
        await loop
      },
    }
  }

  it('keeps reading when forged empty replies with an unreadable header block answer its will probes', async () => {
    // nats.js reads the headers of every empty reply in its request muxer; a throw there used to
    // end its socket reader: the runtime went deaf (every call TIMEOUT) until its pings went unanswered.
    const s = await scene({ willCheckMs: 100 })
    // A will record whose liveness subject only the attacker answers: the victim probes it every period.
    await jetstream(s.attacker).publish('_outpost.w.ghost', te.encode(JSON.stringify({ topic: 'ob/ghost/status', payload: '', qos: 1, retain: true, nonce: 'n1' })))
    let forged = 0
    s.attacker.subscribe('_outpost.a.>', {
      callback: (_err, m) => {
        if (m.reply === undefined || m.reply === '') return
        forged++
        s.attacker.publish(m.reply, new Uint8Array(0), { headers: unreadable })
      },
    })
    await s.attacker.flush()
    // Each forged reply that beat the real one (if any) is dropped; three of them, with calls in between.
    const dropped = (): number => s.victim.stats().bridge.dropped.MALFORMED_FRAME ?? 0
    const answers: unknown[] = []
    const started = Date.now()
    while (dropped() < 3 && Date.now() - started < 15_000) {
      answers.push(await s.call(3_000))
      await sleep(100)
    }
    answers.push(await s.call(3_000))
    expect(forged).toBeGreaterThanOrEqual(3)
    expect(dropped()).toBeGreaterThanOrEqual(3)
    expect(answers.filter((a) => typeof a === 'string')).toEqual([])
    expect(s.lines(), s.tail()).toBeLessThanOrEqual(6)
  }, 30_000)

  it('takes a frame whose header block it cannot read while it reads retained frames, and keeps reading', async () => {
    const nats = await startNatsMqtt()
    cleanup(() => nats.dispose())
    const attacker = await connect({ servers: nats.natsUrl })
    cleanup(() => attacker.close())
    // Stored presences of 1,000 devices: reading them back keeps the subscription reading a while.
    const bridge = createNatsBridge({ servers: nats.natsUrl, deviceId: 'victim', reconnect: fast, willCheckMs: 0 })
    cleanup(() => bridge.close({ drainMs: 100 }))
    await bridge.connect() // makes the stream
    const js = jetstream(attacker)
    for (let i = 0; i < 1_000; i += 100) {
      await Promise.all(Array.from({ length: 100 }, (_, k) => js.publish(`_outpost.r.ob.ghost-${i + k}.status`, rawFrame(presenceSlots({ src: `ghost-${i + k}`, services: [] })))))
    }
    const got: InboundFrame[] = []
    const live = flood(attacker, (i) => attacker.publish('ob.attacker.status', te.encode(`live ${i}`), { headers: unreadable }))
    await until(() => live.sent() > 200)
    await bridge.subscribe('ob/+/status', (f) => void got.push(f))
    await live.stop()
    await attacker.publish('ob.attacker.status', te.encode('last'))
    await until(() => got.some((f) => td.decode(f.payload) === 'last'), 10_000)
    expect(got.filter((f) => f.retained).length).toBe(1_000)
    // Every live frame after the subscription was in place came through, those during the read too.
    const liveGot = got.filter((f) => !f.retained).map((f) => td.decode(f.payload))
    const first = Number(liveGot[0]!.split(' ')[1])
    expect(liveGot.length).toBe(live.sent() - first + 1)
    expect(bridge.stats().dropped).toEqual({})
  }, 30_000)

  it('keeps its memory bounded when its retained store is filled with 1 MB frames, and serves after reading them', async () => {
    let cut = (): void => {}
    const s = await scene({ victimServers: async (nats) => {
      const proxy = await tcpProxy(nats.natsUrl)
      cleanup(() => proxy.close())
      cut = () => proxy.cut()
      return asNats(proxy.url)
    } })
    // 240 stored "presences" just under the server's max_payload (1 MiB): what any client can put there.
    const big = new Uint8Array(MiB - 4_096).fill(0x61)
    const js = jetstream(s.attacker)
    for (let i = 0; i < 240; i += 20) await Promise.all(Array.from({ length: 20 }, (_, k) => js.publish(`_outpost.r.ob.ghost-${i + k}.status`, big)))
    gc()
    const base = process.memoryUsage()
    let peak = 0
    // What is held, not what the collector has yet to take back: a full collection per sample.
    gc()
    const sampler = setInterval(() => {
      gc()
      const m = process.memoryUsage()
      peak = Math.max(peak, m.heapUsed + m.arrayBuffers - (base.heapUsed + base.arrayBuffers))
    }, 20)
    const before = s.victim.stats().bridge.dropped.FRAME_TOO_LARGE ?? 0
    // The victim loses its connection; on the next it reads every stored frame of its filters
    // again before it says it is connected.
    const seen: BridgeStatus['type'][] = []
    const off = s.victimBridge.onStatus((st) => void seen.push(st.type))
    cut()
    await until(() => seen.includes('disconnected') && s.victimBridge.status.type === 'connected', 30_000)
    off()
    clearInterval(sampler)
    // It read them all (dropped as larger than its frame limit) and the real presence among them:
    // the caller, which kept its connection and did not announce itself again, is still live to it.
    expect((s.victim.stats().bridge.dropped.FRAME_TOO_LARGE ?? 0) - before).toBe(240)
    expect(s.victim.directory.deviceState('caller')).toBe('live')
    expect(await s.call()).toMatchObject({ ok: true })
    // All 240 at once are 240 MiB; 4 at a time, 4 MiB (and what the socket holds).
    console.log(`peak held while reading 240 stored 1 MiB frames: ${(peak / MiB).toFixed(1)} MiB`)
    expect(peak / MiB).toBeLessThan(96)
  }, 60_000)

  it('drops frames on subjects no topic maps to (escapes that decode to other levels), counted and logged once', async () => {
    const s = await scene()
    const replies: string[] = []
    s.attacker.subscribe('ob.victim.rep.attacker', { callback: (_e, m) => void replies.push((rawDecoder.decode(m.data) as unknown[])[FIELD.corr] as string) })
    await s.attacker.flush()
    // Each would decode to a topic whose levels are not those of the subject the subscription matched.
    const hostile = [
      'ob.att%61cker.cmd.victim.counter.1.add', // a needless escape: the same topic as ob.attacker…
      'ob.attacker%2Fx.cmd.victim.counter.1.add', // `/` inside a token: one more level
      'ob.attacker.cmd.victim.counter.1.a%2Fb',
      'ob.attacker.cmd.victim.counter.1.a/b',
      'ob.attacker.cmd.victim.counter.1.%23',
      'ob.attacker.cmd.victim.counter.1.%2B',
      'ob.attacker.cmd.victim.counter.1.+',
      'ob.attacker.cmd.victim.counter.1.add%2e',
      'ob.attacker.cmd.victim.counter.1.%00',
      'ob.attacker.cmd.victim.counter.1.%uD800;',
      'ob.attacker.cmd.victim.counter.1.%u110000;',
      'ob.attacker.cmd.victim.counter.1.%zz',
      'ob.attacker.cmd.victim.counter.1.%41dd',
    ]
    const sent = hostile.map((subject) => {
      const id = rawId()
      s.attacker.publish(subject, addFrame({ id }))
      return id
    })
    // The same command on its own subject, after them: once it is answered, each of them was handled.
    const control = rawId()
    s.attacker.publish(ADD, addFrame({ id: control }))
    await until(() => replies.includes(control))
    expect(replies.filter((r) => sent.includes(r))).toEqual([])
    expect(s.victim.stats().bridge.dropped.INVALID_TOPIC_LEVEL).toBe(hostile.length)
    expect(s.observed.executions).toBe(2) // the caller's first call and the control
    expect(s.lines(), s.tail()).toBeLessThanOrEqual(3)
    // A level that needs its escape still arrives as itself.
    expect(topicToSubject('ob/attacker/cmd/victim/counter/1/a.b')).toBe('ob.attacker.cmd.victim.counter.1.a%2Eb')
    expect(await s.call()).toMatchObject({ ok: true })
  }, 30_000)

  it('restores after a reconnect whatever will record another client left in its name', async () => {
    let proxyCut = (): void => {}
    const s = await scene({ victimServers: async (nats) => {
      const proxy = await tcpProxy(nats.natsUrl)
      cleanup(() => proxy.close())
      proxyCut = () => proxy.cut()
      return asNats(proxy.url)
    } })
    const js = jetstream(s.attacker)
    const jsm = await jetstreamManager(s.attacker)
    const records = [
      { nonce: 5 }, // no record at all
      { topic: 'ob/+/x', payload: '', qos: 1, retain: false, nonce: 'dead' }, // a will no bridge can publish
    ]
    for (const record of records) {
      await js.publish('_outpost.w.victim', te.encode(JSON.stringify(record)))
      const seen: BridgeStatus['type'][] = []
      const off = s.victimBridge.onStatus((st) => void seen.push(st.type))
      proxyCut()
      await until(() => seen.includes('disconnected') && s.victimBridge.status.type === 'connected', 10_000)
      off()
      // It read the presence of the others again: the caller (which never lost its connection and
      // so did not announce itself again) is still live to it.
      expect(s.victim.directory.deviceState('caller')).toBe('live')
      // Its will record is its own again: a kill -9 of it would be announced.
      const stored = await jsm.streams.getMessage('OUTPOST_RETAINED', { last_by_subj: '_outpost.w.victim' })
      const mine = JSON.parse(td.decode(stored!.data)) as { topic: string; nonce: string }
      expect(mine.topic).toBe('ob/victim/status')
      expect(mine.nonce).not.toBe('dead')
      expect(await s.call()).toMatchObject({ ok: true })
    }
    expect(s.lines(), s.tail()).toBeLessThanOrEqual(8)
  }, 40_000)

  it('serves its callers through a flood of hostile frames of every kind, with memory and log bounded', async () => {
    const s = await scene()
    const record = await (await jetstreamManager(s.attacker)).streams.getMessage('OUTPOST_RETAINED', { last_by_subj: '_outpost.w.victim' })
    const nonce = (JSON.parse(td.decode(record!.data)) as { nonce: string }).nonce
    const valid = addFrame()
    const kinds: [subject: string, frame: () => Uint8Array][] = [
      [ADD, () => new Uint8Array(0)],
      [ADD, () => te.encode('not cbor at all')],
      [ADD, () => valid.subarray(0, 17)], // truncated
      [ADD, () => Buffer.concat([Buffer.alloc(60_000, 0x81), Buffer.from([0])])], // nested 60,000 deep
      [ADD, () => rawFrame(commandSlots({ src: 'attacker', service: 'counter', name: 'add', target: 'victim', payload: null }), { [FIELD.payload]: SHARING[1]! })],
      [ADD, () => rawFrame(commandSlots({ src: 'attacker', service: 'counter', name: 'add', target: 'victim', payload: null }), { [FIELD.payload]: TAGGED[12]! })],
      [ADD, () => rawFrame(commandSlots({ src: 'attacker', service: 'counter', name: 'add', target: 'victim', payload: null }), { [FIELD.payload]: sharedDag(40) })],
      [ADD, () => addFrame({ src: 'caller' })], // forged src
      [ADD, () => rawFrame(replySlots({ src: 'attacker', corr: rawId(), replyTo: 'victim' }))], // wrong kind
      [ADD, () => new Uint8Array(MiB - 2_048).fill(0x61)], // huge, under max_payload
      ['ob.attacker.rep.victim', () => rawFrame(replySlots({ src: 'attacker', corr: rawId(), replyTo: 'victim', payload: 1 }))], // a reply to nothing
      ['ob.attacker.rep.victim', () => rawFrame(replySlots({ src: 'caller', corr: rawId(), replyTo: 'victim', payload: 1 }))],
      ['ob.attacker.status', () => rawFrame(presenceSlots({ src: 'attacker', services: [null] }))],
      ['ob.attacker.status', () => new Uint8Array(0)],
      ['ob.attacker.status', () => rawFrame(presenceSlots({ src: 'victim', online: false, services: [] }))],
      ['ob.attacker.evt.counter.1.added', () => rawFrame(eventSlots({ src: 'attacker', service: 'counter', name: 'added', payload: { n: 'x' } }))],
      [`_outpost.a.victim.${nonce}`, () => new Uint8Array(0)], // its liveness subject
    ]
    // Warm-up, then the baseline.
    for (let i = 0; i < 2 * kinds.length; i++) s.attacker.publish(kinds[i % kinds.length]![0], kinds[i % kinds.length]![1]())
    await s.attacker.flush()
    expect(await s.call()).toMatchObject({ ok: true })
    const lines = s.lines()
    gc()
    const base = process.memoryUsage().heapUsed
    const f = flood(s.attacker, (i) => {
      const [subject, frame] = kinds[i % kinds.length]!
      if (subject.startsWith('_outpost.a.')) s.attacker.publish(subject, frame(), { reply: 'nobody.listens' })
      else s.attacker.publish(subject, frame(), i % 7 === 0 ? { headers: unreadable } : undefined)
    })
    // Calls go on until 20,000 hostile frames went out (at the rate the server takes them).
    const answers: unknown[] = []
    while (f.sent() < 20_000) {
      answers.push(await s.call())
      await sleep(100)
    }
    await f.stop()
    answers.push(await s.call())
    expect(answers.filter((a) => typeof a === 'string')).toEqual([])
    // Only the caller's calls ran: n counts them.
    expect(answers.map((a) => (a as { n: number }).n)).toEqual(answers.map((_, i) => i + 3))
    const dropped = s.victim.stats().bridge.dropped
    for (const code of ['MALFORMED_FRAME', 'INVALID_ENVELOPE', 'SENDER_MISMATCH', 'LATE_REPLY', 'FRAME_TOO_LARGE']) expect(dropped[code], code).toBeGreaterThan(100)
    expect(s.lines() - lines, s.tail()).toBeLessThanOrEqual(15)
    gc()
    expect((process.memoryUsage().heapUsed - base) / MiB).toBeLessThan(16)
  }, 40_000)

  it('takes a reply only from the device it called, before the deadline', async () => {
    const s = await scene({ services: 'relay' })
    // A second echo device, run by the attacker: it answers late, and has others answer in its name.
    const services = [{ name: 'echo', version: '1', commands: ['say'], events: [] }]
    s.attacker.publish('ob.fake-echo.status', rawFrame(presenceSlots({ src: 'fake-echo', services })))
    let commands = 0
    s.attacker.subscribe('ob.victim.cmd.fake-echo.echo.1.say', {
      callback: (_e, m) => {
        commands++
        const cmd = rawDecoder.decode(m.data) as unknown[]
        const corr = cmd[FIELD.id] as string
        const payload = { text: 'forged', device: 'fake-echo' }
        s.attacker.publish('ob.attacker.rep.victim', rawFrame(replySlots({ src: 'attacker', corr, replyTo: 'victim', payload })))
        s.attacker.publish('ob.attacker.rep.victim', rawFrame(replySlots({ src: 'fake-echo', corr, replyTo: 'victim', payload })))
        setTimeout(() => s.attacker.publish('ob.fake-echo.rep.victim', rawFrame(replySlots({ src: 'fake-echo', corr, replyTo: 'victim', payload }))), 700)
      },
    })
    await s.attacker.flush()
    await until(() => s.victim.directory.instances('echo', '1').length === 2)
    const results: unknown[] = []
    for (let i = 0; i < 6; i++) {
      results.push(
        await s.caller.invoke({ service: 'counter', command: 'relay' }, { text: `t${i}` }, { device: 'victim', timeoutMs: 500 }).then(
          (r) => r,
          (err: { code?: string }) => err.code,
        ),
      )
    }
    await sleep(800)
    expect(commands).toBe(3)
    // Round robin: the real echo device (hosted by the caller) answered its half; the fake's
    // half failed at its deadline, whatever was sent in its name before.
    const answered = results.filter((r) => typeof r === 'object')
    expect(answered.length).toBe(3)
    for (const r of answered) expect((r as { via: string }).via).toBe('caller')
    expect(results.filter((r) => typeof r === 'string').length).toBe(3)
    const dropped = s.victim.stats().bridge.dropped
    expect(dropped.LATE_REPLY).toBe(6) // the attacker's own (not from the target) and the late ones
    expect(dropped.SENDER_MISMATCH).toBe(3)
    expect(await s.call()).toMatchObject({ ok: true })
  }, 30_000)

  it('comes back and serves after the server is killed and restarted while hostile frames flow', async () => {
    const s = await scene()
    const f = flood(s.attacker, (i) => {
      switch (i % 4) {
        case 0:
          return s.attacker.publish('ob.attacker.status', te.encode('junk'), { headers: unreadable })
        case 1:
          return s.attacker.publish(ADD, addFrame({ src: 'caller' }), { headers: unreadable })
        case 2:
          return s.attacker.publish('ob.attacker.rep.victim', rawFrame(replySlots({ src: 'attacker', corr: rawId(), replyTo: 'victim' })))
        default:
          return s.attacker.publish(ADD, te.encode('junk'))
      }
    })
    const seen: BridgeStatus['type'][] = []
    s.victimBridge.onStatus((st) => void seen.push(st.type))
    const answers: unknown[] = []
    for (let round = 0; round < 2; round++) {
      const at = f.sent()
      await until(() => f.sent() > at + 2_000)
      await s.nats.kill()
      await s.nats.restart()
      const back = Date.now()
      // Served again within seconds of the server's return, with the flood going on.
      let answer: unknown
      while (typeof (answer = await s.call(2_000)) === 'string' && Date.now() - back < 15_000) await sleep(100)
      answers.push(answer)
      for (let i = 0; i < 5; i++) answers.push(await s.call())
    }
    const droppedBefore = s.victim.stats().bridge.dropped
    const at = f.sent()
    await until(() => f.sent() > at + 2_000)
    await f.stop()
    answers.push(await s.call())
    // Both times it lost its connection and came back, and the flood reached it again after the last.
    expect(seen.filter((t) => t === 'disconnected').length).toBe(2)
    expect(s.victim.stats().bridge.dropped.SENDER_MISMATCH).toBeGreaterThan(droppedBefore.SENDER_MISMATCH ?? 0)
    expect(answers.filter((a) => typeof a === 'string')).toEqual([])
    // Each call ran once: the counter's answers never repeat.
    const ns = answers.map((a) => (a as { n: number }).n)
    expect(new Set(ns).size).toBe(ns.length)
    expect(s.lines(), s.tail()).toBeLessThanOrEqual(25)
  }, 60_000)
})
