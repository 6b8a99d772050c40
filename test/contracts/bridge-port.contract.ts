import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { ErrorCode, isOutpostError } from '../../runtime/errors.js'
import type { Bridge, BridgeStatus, InboundFrame } from '../../runtime/ports/bridge.js'
import { until } from '../helpers/wait.js'
import { caught } from '../helpers/caught.js'

/** How a bridge of a test network is made. */
export interface PortBridgeOptions {
  /** Largest inbound payload the bridge takes. */
  maxPayloadBytes?: number
  /** Connect through the network's cuttable path (see `cut`). */
  cuttable?: boolean
}

/** A fresh "network" per test: bridges made from it reach each other. */
export interface PortNetwork {
  /** A bridge with a client id of its own (MQTT: a persistent session). */
  bridge(id: string, opts?: PortBridgeOptions): Bridge
  /** A first topic level no other run uses (Mosquitto outlives the tests). */
  readonly prefix: string
  dispose(): Promise<void>
}

/** A network whose connections can be lost (a broker's): the suite checks what a transport does then. */
export interface LossyPortNetwork extends PortNetwork {
  /** Loses every connection of the cuttable bridges, as a network failure would (no DISCONNECT). */
  cut(): void
  /** Takes the broker away (every connection lost, none taken). */
  brokerDown(): Promise<void>
  /** Gives the broker back where it was. */
  brokerUp(): Promise<void>
}

/** What a transport may do differently where MQTT leaves the choice to the broker. */
export interface PortCapabilities {
  /**
   * A frame matching several subscriptions of one session comes once per subscription, not once
   * (MQTT 3.1.1 §3.3.5 allows both; nats-server does this, aedes and Mosquitto send one copy).
   * The bridge hands each copy to every matching handler; the runtime dedupes by message id.
   */
  copyPerSubscription?: boolean
  /**
   * false: a transport that delivers at most once across a lost connection (NATS core keeps
   * nothing for a subscriber that is away and never sends a frame again), instead of MQTT's
   * persistent session. The suite then checks that: nothing comes again, nothing marked redelivered.
   */
  redeliversAfterLoss?: boolean
}

export type BridgePortContractOptions = { capabilities?: PortCapabilities } & (
  | { createNetwork(): Promise<PortNetwork>; lossy?: false }
  | { createNetwork(): Promise<LossyPortNetwork>; lossy: true }
)

const text = (s: string): Uint8Array => new TextEncoder().encode(s)
const read = (f: InboundFrame): string => new TextDecoder().decode(f.payload)

/** What every transport behind the `Bridge` port must do, whatever carries the frames. */
export function describeBridgePortContract(name: string, opts: BridgePortContractOptions): void {
  describe(`Bridge port contract: ${name}`, () => {
    let net: PortNetwork
    /** The network, where connections can be lost (only in tests declared for `opts.lossy`). */
    const lossy = (): LossyPortNetwork => net as LossyPortNetwork
    let bridges: Bridge[] = []
    const open = async (id: string, o?: PortBridgeOptions): Promise<Bridge> => {
      const b = net.bridge(id, o)
      bridges.push(b)
      await b.connect()
      return b
    }
    /** Frames a bridge receives on a filter, in arrival order. */
    const collect = async (b: Bridge, filter: string): Promise<InboundFrame[]> => {
      const got: InboundFrame[] = []
      await b.subscribe(filter, (f) => void got.push(f))
      return got
    }
    const t = (rest: string): string => `${net.prefix}/${rest}`

    beforeEach(async () => {
      net = await opts.createNetwork()
    })
    afterEach(async () => {
      await Promise.all(bridges.map((b) => b.close({ drainMs: 100 })))
      bridges = []
      await net.dispose()
    })

    it('settles a publish with its acknowledgement and hands the bytes to a subscriber, at QoS 1 and QoS 0', async () => {
      const a = await open('pub')
      const b = await open('sub')
      const got = await collect(b, t('a/x'))
      await expect(a.publish(t('a/x'), text('one'))).resolves.toBeUndefined()
      await expect(a.publish(t('a/x'), text('two'), { qos: 0 })).resolves.toBeUndefined()
      await until(() => got.length === 2)
      expect(got.map((f) => [f.topic, read(f), f.retained, f.redelivered])).toEqual([
        [t('a/x'), 'one', false, false],
        [t('a/x'), 'two', false, false],
      ])
      expect(a.stats().published).toBe(2)
      expect(b.stats().received).toBeGreaterThanOrEqual(2)
    })

    it('settles a publish whose caller sends it again itself (callerResends) with its acknowledgement, in order with the others', async () => {
      const a = await open('pub')
      const b = await open('sub')
      const got = await collect(b, t('cr/x'))
      const sent = Array.from({ length: 40 }, (_, i) => `f${i}`)
      // Both kinds interleaved on one topic: one publisher, one order.
      await Promise.all(sent.map((s, i) => a.publish(t('cr/x'), text(s), i % 3 === 0 ? { qos: 1 } : { qos: 1, callerResends: true })))
      await expect(a.publish(t('cr/x'), text('kept'), { qos: 1, retain: true, callerResends: true })).resolves.toBeUndefined()
      await until(() => got.length === sent.length + 1)
      expect(got.map(read)).toEqual([...sent, 'kept'])
      expect(a.stats().published).toBe(sent.length + 1)
      const late = await open('late')
      const retained = await collect(late, t('cr/x'))
      await until(() => retained.length === 1)
      expect(retained.map((f) => [read(f), f.retained])).toEqual([['kept', true]])
      await a.publish(t('cr/x'), new Uint8Array(0), { retain: true, callerResends: true })
    })

    it('stops handing frames to a subscription once it is unsubscribed', async () => {
      const a = await open('pub')
      const b = await open('sub')
      const wide = await collect(b, t('u/#'))
      const narrow: InboundFrame[] = []
      const sub = await b.subscribe(t('u/x'), (f) => void narrow.push(f))
      // With a copy per subscription, each handler gets 'before' twice (once per matching filter).
      const copies = opts.capabilities?.copyPerSubscription === true ? 2 : 1
      await a.publish(t('u/x'), text('before'))
      await until(() => narrow.length === copies && wide.length >= 1)
      await sub.unsubscribe()
      await sub.unsubscribe() // idempotent
      await a.publish(t('u/x'), text('after'))
      await until(() => wide.some((f) => read(f) === 'after'))
      expect(narrow.map(read)).toEqual(Array<string>(copies).fill('before'))
      // Once the narrow filter is gone, the wide one gets a single copy.
      expect(wide.filter((f) => read(f) === 'after').length).toBe(1)
    })

    it('matches + and # wildcards as MQTT does', async () => {
      const a = await open('pub')
      const b = await open('sub')
      const got = await collect(b, t('+/evt/#'))
      for (const topic of ['d1/evt/s/1/e', 'd2/evt', 'd1/cmd/s', 'd1/x/evt/s']) await a.publish(t(topic), text(topic))
      await a.publish(t('d3/evt/last'), text('last'))
      // Order holds per topic only (MQTT 3.1.1 §4.6; nats-server interleaves topics), so as a set.
      const wanted = ['d1/evt/s/1/e', 'd2/evt', 'last']
      await until(() => wanted.every((w) => got.some((f) => read(f) === w)))
      expect(got.map(read).sort()).toEqual([...wanted].sort())
    })

    it('keeps retained frames for later subscribers, and clears one with an empty retained frame that subscribers get as empty', async () => {
      const a = await open('pub')
      await a.publish(t('r/one'), text('kept'), { retain: true })
      await a.publish(t('r/two'), text('also kept'), { retain: true })
      const b = await open('early')
      const early = await collect(b, t('r/#'))
      await until(() => early.length === 2)
      expect(early.map((f) => [f.topic, read(f), f.retained]).sort()).toEqual([
        [t('r/one'), 'kept', true],
        [t('r/two'), 'also kept', true],
      ])
      await a.publish(t('r/one'), new Uint8Array(0), { retain: true })
      await until(() => early.length === 3)
      expect(early[2]!.topic).toBe(t('r/one'))
      expect(early[2]!.payload.length).toBe(0)

      const c = await open('late')
      const late = await collect(c, t('r/#'))
      await a.publish(t('r/sentinel'), text('live'))
      await until(() => late.some((f) => read(f) === 'live') && late.some((f) => f.retained))
      expect(late.filter((f) => f.retained).map((f) => [f.topic, read(f)])).toEqual([[t('r/two'), 'also kept']])
      // Clean up what a broker outside the test keeps.
      await a.publish(t('r/two'), new Uint8Array(0), { retain: true })
    })

    it('delivers the frames of one publisher on one topic in the order they were published', async () => {
      const a = await open('pub')
      const b = await open('sub')
      const got = await collect(b, t('o/x'))
      const sent = Array.from({ length: 200 }, (_, i) => String(i))
      await Promise.all(sent.map((s) => a.publish(t('o/x'), text(s))))
      await until(() => got.length === sent.length)
      expect(got.map(read)).toEqual(sent)
    })

    it('drops an inbound frame larger than its limit, counts it, acknowledges it and goes on', async () => {
      const a = await open('pub')
      const b = await open('small', { maxPayloadBytes: 1_024 })
      const got = await collect(b, t('big/x'))
      await a.publish(t('big/x'), new Uint8Array(4_000).fill(7))
      await a.publish(t('big/x'), text('small'))
      await until(() => got.length === 1)
      expect(read(got[0]!)).toBe('small')
      expect(b.stats().dropped[ErrorCode.FRAME_TOO_LARGE]).toBe(1)
    })

    /** A subscriber whose handler holds each frame's acknowledgement until released. */
    const holding = async (b: Bridge, filter: string): Promise<{ got: InboundFrame[]; release(): void }> => {
      const got: InboundFrame[] = []
      const releases: (() => void)[] = []
      await b.subscribe(filter, (f) => {
        got.push(f)
        return new Promise<void>((r) => releases.push(r))
      })
      return { got, release: () => releases.splice(0).forEach((r) => r()) }
    }

    if (opts.lossy === true && opts.capabilities?.redeliversAfterLoss === false) {
      it('delivers at most once across a lost connection: nothing comes again, and a frame published while the subscriber is away is lost', async () => {
        const a = await open('pub')
        const b = await open('sub', { cuttable: true })
        const held = await holding(b, t('d/x'))
        await a.publish(t('d/x'), text('held'))
        await until(() => held.got.length === 1)
        // Published the moment the subscriber notices the loss: before it can have subscribed again.
        const away = new Promise<unknown>((r) => {
          const off = b.onStatus((s) => {
            if (s.type !== 'disconnected') return
            off()
            r(a.publish(t('d/x'), text('while away')).catch((e: unknown) => e))
          })
        })
        lossy().cut()
        await away
        await until(() => b.status.type === 'connected', 10_000)
        await a.publish(t('d/x'), text('after'))
        await until(() => held.got.some((f) => read(f) === 'after'), 10_000)
        expect(held.got.map((f) => [read(f), f.redelivered])).toEqual([['held', false], ['after', false]])
        held.release()
      })
    } else if (opts.lossy === true) {
      it('marks a frame the broker sends again, its acknowledgement held when the connection was lost, as redelivered', async () => {
        const a = await open('pub')
        const b = await open('sub', { cuttable: true })
        const held = await holding(b, t('d/x'))
        await a.publish(t('d/x'), text('held'))
        await until(() => held.got.length === 1)
        expect(held.got[0]!.redelivered).toBe(false)
        // The broker (persistent session) sends it again once the bridge is back.
        lossy().cut()
        await until(() => held.got.length === 2, 10_000)
        expect(held.got.map((f) => [read(f), f.redelivered])).toEqual([['held', false], ['held', true]])
        held.release()
      })
    } else {
      it('never delivers a frame again: a frame whose handler holds its acknowledgement is not redelivered', async () => {
        const a = await open('pub')
        const b = await open('sub')
        const held = await holding(b, t('d/x'))
        await a.publish(t('d/x'), text('held'))
        await until(() => held.got.length === 1)
        await a.publish(t('d/x'), text('next'), { retain: true })
        await until(() => held.got.length === 2)
        held.release()
        const c = await open('late')
        const late = await holding(c, t('d/x'))
        await until(() => late.got.length === 1)
        late.release()
        expect([...held.got, ...late.got].map((f) => [read(f), f.retained, f.redelivered])).toEqual([['held', false, false], ['next', false, false], ['next', true, false]])
      })
    }

    it('reports its status as a typed stream: idle, connecting, connected, closed', async () => {
      const b = net.bridge('status')
      bridges.push(b)
      expect(b.status).toEqual({ type: 'idle' })
      const seen: BridgeStatus['type'][] = []
      const consumed = (async () => {
        for await (const s of b.statusStream()) seen.push(s.type)
      })()
      await b.connect()
      await b.connect() // idempotent
      expect(b.status.type).toBe('connected')
      await b.close({ drainMs: 100 })
      await consumed
      expect(seen).toEqual(['idle', 'connecting', 'connected', 'closed'])
    })

    if (opts.lossy === true) {
      it('goes disconnected, reconnecting and connected again when the broker goes away and comes back', async () => {
        const b = await open('survivor', { cuttable: true })
        const got = await collect(b, t('back/x'))
        const seen: BridgeStatus[] = []
        b.onStatus((s) => seen.push(s))
        await lossy().brokerDown()
        await until(() => seen.some((s) => s.type === 'reconnecting'))
        expect(isOutpostError(await caught(b.publish(t('back/x'), text('offline'))), ErrorCode.BRIDGE_UNAVAILABLE)).toBe(true)
        await lossy().brokerUp()
        await until(() => b.status.type === 'connected', 10_000)
        const kinds = seen.map((s) => s.type)
        expect(kinds[0]).toBe('disconnected')
        expect(kinds).toEqual(expect.arrayContaining(['reconnecting', 'connecting', 'connected']))
        expect(kinds.indexOf('reconnecting')).toBeLessThan(kinds.lastIndexOf('connected'))
        // Its subscriptions are in place again.
        const a = await open('pub')
        await a.publish(t('back/x'), text('again'))
        await until(() => got.some((f) => read(f) === 'again'), 10_000)
      })

      it('rejects a callerResends publish still awaiting its acknowledgement when the connection is lost, and does not send it again itself', async () => {
        const watcher = await open('watcher')
        const got = await collect(watcher, t('cl/+'))
        const a = await open('pub', { cuttable: true })
        // Written this tick, so the connection is lost before any of them reached the broker.
        const lost = Array.from({ length: 20 }, (_, i) => a.publish(t('cl/lost'), text(`lost${i}`), { qos: 1, callerResends: true }))
        lossy().cut()
        for (const p of lost) expect(isOutpostError(await caught(p), ErrorCode.BRIDGE_UNAVAILABLE)).toBe(true)
        await until(() => a.status.type === 'connected', 10_000)
        await a.publish(t('cl/after'), text('after'), { qos: 1, callerResends: true })
        await until(() => got.length > 0, 10_000)
        // The marker published after the reconnect came through; nothing of before was sent again.
        expect(got.map((f) => [f.topic, read(f)])).toEqual([[t('cl/after'), 'after']])
      })

      it('has the broker publish its last will when its connection is lost', async () => {
        const watcher = await open('watcher')
        const wills = await collect(watcher, t('will/+'))
        const lost = net.bridge('lost', { cuttable: true })
        bridges.push(lost)
        lost.setWill(t('will/lost'), text('gone'), { qos: 1 })
        await lost.connect()
        lossy().cut()
        await until(() => wills.length === 1, 10_000)
        expect(wills.map((f) => [f.topic, read(f)])).toEqual([[t('will/lost'), 'gone']])
      })
    }

    it('sends no last will when it closes cleanly', async () => {
      const watcher = await open('watcher')
      const wills = await collect(watcher, t('will/+'))
      const clean = net.bridge('clean')
      bridges.push(clean)
      clean.setWill(t('will/clean'), text('gone'), { qos: 1 })
      await clean.connect()
      await clean.close({ drainMs: 100 })
      const sentinel = await open('sentinel')
      await sentinel.publish(t('will/sentinel'), text('end'))
      await until(() => wills.some((f) => read(f) === 'end'))
      expect(wills.map((f) => f.topic)).toEqual([t('will/sentinel')])
    })

    it('closes idempotently, drains handlers in flight, and refuses work afterwards with BRIDGE_CLOSED', async () => {
      const a = await open('pub')
      const b = await open('sub')
      let finished = false
      let started = false
      await b.subscribe(t('c/x'), async () => {
        started = true
        await new Promise((r) => setTimeout(r, 150))
        finished = true
      })
      await a.publish(t('c/x'), text('slow'))
      await until(() => started)
      await Promise.all([b.close({ drainMs: 2_000 }), b.close({ drainMs: 2_000 })])
      expect(finished).toBe(true)
      expect(b.status).toEqual({ type: 'closed' })
      expect(isOutpostError(await caught(b.publish(t('c/x'), text('late'))), ErrorCode.BRIDGE_CLOSED)).toBe(true)
      expect(isOutpostError(await caught(b.subscribe(t('c/y'), () => {})), ErrorCode.BRIDGE_CLOSED)).toBe(true)
      expect(isOutpostError(await caught(b.connect()), ErrorCode.BRIDGE_CLOSED)).toBe(true)
      await b.close()
    })
  })
}
