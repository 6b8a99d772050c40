import { randomBytes } from 'node:crypto'
import { connect as natsConnect, headers as natsHeaders, type NatsConnection } from '@nats-io/transport-node'
import { pino } from 'pino'
import { backoffDelay } from '../../backoff.js'
import { ErrorCode, OutpostError, errorMessage } from '../../errors.js'
import { createLogLimiter } from '../../log-limiter.js'
import type { Bridge, PublishOptions, Subscription } from '../../ports/bridge.js'
import { assertTopicSegment } from '../../wire/topics.js'
import { createBridgeStats, createStatusHub, DEFAULT_MAX_PAYLOAD_BYTES, snapshotStats } from '../bridge-kit.js'
import { rootOf, streamOf, type NatsBridgeOptions } from './nats-options.js'
import { createNatsStore, type NatsStore } from './nats-store.js'
import { escapeLevel, filterToSubjects, prefixTokens, topicToSubject } from './nats-subjects.js'
import { createInbound, guardReader, newGroup, RETAINED_SEQ, type Group, type LocalSub } from './nats-inbound.js'
import { createWillKeeper, type WillFrame, type WillKeeper } from './nats-will.js'

export type { NatsBridgeOptions } from './nats-options.js'

interface Deferred {
  promise: Promise<void>
  resolve(): void
  reject(err: unknown): void
}
const deferred = (): Deferred => {
  let resolve!: () => void
  let reject!: (err: unknown) => void
  const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)))
  promise.catch(() => {})
  return { promise, resolve, reject }
}

/**
 * Creates a NATS bridge: the frames-only `Bridge` port over NATS core, with JetStream for what
 * core lacks. Design (runtime/bridges/README.md, "NATS", says it at length):
 *
 * - Topics map to subjects level by level (`a/b` ↔ `a.b`, `+` ↔ `*`, `a/#` ↔ `a` and `a.>`);
 *   levels NATS cannot carry are `%XX`-escaped (nats-subjects.ts). A topic or filter MQTT forbids
 *   is refused with INVALID_TOPIC_LEVEL.
 * - Acknowledgement: NATS core has none, so a QoS 1 publish settles with a PING/PONG round trip,
 *   which the server answers only after it processed (routed) every message before it. All the
 *   publishes of one tick share one round trip. A publish whose round trip is cut by a lost
 *   connection rejects with BRIDGE_UNAVAILABLE; the bridge never sends anything again itself,
 *   with or without `callerResends` (nats.js discards its buffer when it reconnects).
 * - Retained messages and last wills live in a JetStream stream that keeps one message per
 *   subject (nats-store.ts, nats-will.ts): a retained publish is stored, then published live
 *   carrying its stream sequence; a new subscription and every reconnect read the stored ones.
 * - Delivery is at most once: NATS core keeps nothing for a subscriber that is away, and never
 *   redelivers (`redelivered` is always false). Commands survive that because the caller re-sends
 *   unanswered commands when the target announces itself again; events to an absent device are lost.
 * @throws INVALID_CONFIG for a bad device id or subject prefix
 */
export function createNatsBridge(opts: NatsBridgeOptions): Bridge {
  assertTopicSegment('device id', opts.deviceId)
  const prefix = prefixTokens(opts.subjectPrefix)
  const root = rootOf(prefix)
  const streamName = opts.stream ?? streamOf(prefix)
  const deviceToken = escapeLevel(opts.deviceId)
  const nonce = randomBytes(8).toString('hex')
  const maxPayloadBytes = opts.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES
  const baseLog = opts.logger ?? pino({ level: 'silent' })
  const log = baseLog.child(baseLog.bindings().device === undefined ? { bridge: 'nats', device: opts.deviceId } : { bridge: 'nats' })
  const trouble = createLogLimiter(log)
  const status = createStatusHub()
  const stats = createBridgeStats()
  const groups = new Map<string, Group>()
  const inbound = createInbound({ prefix, maxPayloadBytes, stats, trouble })
  const chains = new Map<string, Promise<void>>()
  const acks = new Set<Deferred>()
  let batch: Deferred | undefined
  let nc: NatsConnection | undefined
  let store: NatsStore | undefined
  let will: WillKeeper | undefined
  let willFrame: WillFrame | undefined
  let started = false
  let closing = false
  // The server accepted the current connection (publishes are taken); `lost`: the last one was lost.
  let up = false
  let lost = false
  let connection = 0
  // Reconnect attempts since the loss, as announced in the status.
  let announced = 0
  let dials = 0
  let announcedDelay = 0
  let waiters: Deferred[] = []
  let cancelSleep: (() => void) | undefined

  const unavailable = (what: string, cause?: unknown): OutpostError =>
    new OutpostError(ErrorCode.BRIDGE_UNAVAILABLE, `bridge of ${opts.deviceId}: ${what}${cause === undefined ? '' : `: ${errorMessage(cause)}`}`, { cause, retryable: true })
  const ensureOpen = (): void => {
    if (closing) throw new OutpostError(ErrorCode.BRIDGE_CLOSED, `bridge of ${opts.deviceId} is closed`)
  }
  const settleWaiters = (err?: OutpostError): void => {
    const ws = waiters
    waiters = []
    for (const w of ws) (err === undefined ? w.resolve() : w.reject(err))
  }
  /** The acknowledgement of every QoS 1 publish of this tick: one PING/PONG round trip. */
  const ack = (c: NatsConnection): Promise<void> => {
    if (batch !== undefined) return batch.promise
    const b = deferred()
    batch = b
    acks.add(b)
    queueMicrotask(() => {
      if (batch === b) batch = undefined
      if (!acks.has(b)) return // rejected by a loss meanwhile
      c.flush().then(
        () => {
          acks.delete(b)
          b.resolve()
        },
        (err: unknown) => {
          acks.delete(b)
          b.reject(unavailable('connection lost before the server acknowledged', err))
        },
      )
    })
    return b.promise
  }

  const send = (subject: string, payload: Uint8Array, qos: 0 | 1, seq: number | undefined): Promise<void> => {
    const c = nc
    if (c === undefined || !up) return Promise.reject(unavailable('not connected'))
    try {
      if (seq === undefined) c.publish(subject, payload)
      else {
        const h = natsHeaders()
        h.set(RETAINED_SEQ, String(seq))
        c.publish(subject, payload, { headers: h })
      }
    } catch (err) {
      const max = c.info?.max_payload
      if (max !== undefined && payload.length > max) {
        return Promise.reject(new OutpostError(ErrorCode.FRAME_TOO_LARGE, `frame of ${payload.length} bytes exceeds the server's max_payload of ${max}`, { cause: err }))
      }
      return Promise.reject(unavailable('publish failed', err))
    }
    return qos === 0 ? Promise.resolve() : ack(c)
  }

  const publish = (topic: string, payload: Uint8Array, popts?: PublishOptions): Promise<void> => {
    let subject: string
    try {
      ensureOpen()
      if (nc === undefined || !up) throw unavailable('not connected')
      subject = topicToSubject(topic, prefix)
    } catch (err) {
      return Promise.reject(err)
    }
    stats.published++
    const qos = popts?.qos ?? 1
    const retain = popts?.retain === true
    const before = chains.get(topic)
    if (!retain && before === undefined) return send(subject, payload, qos, undefined)
    // A retained publish is stored before it goes out live; later publishes on its topic wait for
    // it, so one publisher's frames on one topic keep their order.
    const run = async (): Promise<void> => {
      if (before !== undefined) await before
      if (!retain) return send(subject, payload, qos, undefined)
      if (store === undefined || !up) throw unavailable('not connected')
      const seq = await store.putRetained(subject, payload)
      return send(subject, payload, qos, seq)
    }
    const p = run()
    const link = p.then(
      () => {},
      () => {},
    )
    chains.set(topic, link)
    void link.then(() => {
      if (chains.get(topic) === link) chains.delete(topic)
    })
    return p
  }

  const onLost = (): void => {
    if (!up && lost) return
    up = false
    lost = true
    connection++
    batch = undefined
    const err = unavailable('connection lost before the server acknowledged')
    for (const b of acks) b.reject(err)
    acks.clear()
    if (!closing) status.set({ type: 'disconnected' })
  }

  /** Every (re)connect: stream, own will, this connection's will record, retained frames; then `connected`. */
  const whenUp = async (): Promise<void> => {
    const seq = ++connection
    up = true
    const wasLost = lost
    lost = false
    // Each step on its own: the will record (which any client with rights on the stream can
    // write) failing must not keep this connection's record from being stored, nor the retained
    // frames from being read again.
    const failed = (err: unknown): void => trouble.warn('restore-failed', { err: errorMessage(err) }, 'restoring retained messages or the will record failed (is JetStream enabled?)')
    store!.reset()
    await store!.ensure().catch(failed)
    await will!.connected(wasLost).catch(failed)
    await Promise.all([...groups.values()].map((g) => inbound.deliverRetained(store!, g, g.locals.slice()).catch(failed)))
    if (seq !== connection || !up || closing) return
    announced = 0
    dials = 0
    status.set({ type: 'connected', sessionPresent: false })
    settleWaiters()
  }

  const watchStatus = async (c: NatsConnection): Promise<void> => {
    for await (const s of c.status()) {
      if (closing) continue
      if (s.type === 'disconnect' || s.type === 'staleConnection') onLost()
      else if (s.type === 'reconnecting') {
        dials++
        status.set({ type: 'connecting', attempt: dials })
      }
      else if (s.type === 'reconnect') void whenUp()
    }
  }

  /**
   * Called by nats.js at each turn of its reconnect loop (once or more per attempt): the backoff of
   * the next attempt, announced once per attempt. nats.js waits that long from the previous
   * attempt's start; the first attempt after a loss goes at once.
   */
  const reconnectDelay = (): number => {
    if (closing || nc === undefined) return 0
    if (up) onLost() // nats.js starts dialing before its 'disconnect' status reaches us
    const next = dials + 1
    if (next !== announced) {
      announced = next
      announcedDelay = next === 1 ? 0 : backoffDelay(next - 1, opts.reconnect)
      status.set({ type: 'reconnecting', attempt: next, delayMs: announcedDelay })
    }
    return announcedDelay
  }

  const attach = (c: NatsConnection): void => {
    nc = c
    const guarded = guardReader(c, (err) => {
      stats.drop(ErrorCode.MALFORMED_FRAME)
      trouble.warn('inbound-unreadable', { err: errorMessage(err) }, 'dropped an inbound message the NATS client could not read')
    })
    if (!guarded) log.error('this nats.js version has no message hook to guard: a message it cannot read would stop the connection from reading')
    store = createNatsStore(c, streamName, root)
    for (const g of groups.values()) inbound.open(c, g)
    will = createWillKeeper({
      nc: c,
      store,
      device: deviceToken,
      nonce,
      checkMs: opts.willCheckMs ?? 2_000,
      isConnected: () => up && !closing,
      log,
      publishWill: (w) => publish(w.topic, Buffer.from(w.payload, 'base64'), { qos: w.qos, retain: w.retain }),
    })
    void will.set(willFrame, false)
    void watchStatus(c)
    // nats.js gives a connection up for good on some errors (credentials refused twice in a row);
    // the bridge then starts over with a new one, with its own backoff, as a device must.
    void c.closed().then((err) => {
      if (closing || nc !== c) return
      onLost()
      will?.stop()
      nc = undefined
      trouble.warn('connection-closed', { err: err === undefined ? undefined : errorMessage(err) }, 'the NATS client closed its connection; connecting again with backoff')
      void dial()
    })
  }

  const dial = async (): Promise<void> => {
    for (let attempt = 1; !closing; attempt++) {
      status.set({ type: 'connecting', attempt })
      try {
        const c = await natsConnect({
          servers: opts.servers,
          name: opts.deviceId,
          user: opts.user,
          pass: opts.pass,
          token: opts.token,
          reconnect: true,
          maxReconnectAttempts: -1,
          reconnectDelayHandler: reconnectDelay,
          timeout: opts.connectTimeoutMs ?? 5_000,
          pingInterval: opts.pingIntervalMs ?? 30_000,
        })
        if (closing) {
          await c.close()
          return
        }
        attach(c)
        await whenUp()
        return
      } catch (err) {
        const e = unavailable(`NATS ${[opts.servers].flat().join(', ')} unreachable`, err)
        if (attempt === 1) log.warn({ err: errorMessage(err) }, 'nats connection failed; retrying with backoff')
        settleWaiters(e)
        if (closing) return
        const delayMs = backoffDelay(attempt, opts.reconnect)
        status.set({ type: 'reconnecting', attempt, delayMs })
        await new Promise<void>((r) => {
          const t = setTimeout(r, delayMs)
          cancelSleep = () => {
            clearTimeout(t)
            r()
          }
        })
        cancelSleep = undefined
      }
    }
  }

  return {
    deviceId: opts.deviceId,
    maxPayloadBytes,
    get status() {
      return status.current
    },
    connect() {
      try {
        ensureOpen()
      } catch (err) {
        return Promise.reject(err)
      }
      if (status.current.type === 'connected') return Promise.resolve()
      const w = deferred()
      waiters.push(w)
      if (!started) {
        started = true
        void dial()
      }
      return w.promise
    },
    publish,
    async subscribe(filter, handler) {
      ensureOpen()
      const subjects = filterToSubjects(filter, prefix)
      let g = groups.get(filter)
      if (g === undefined) {
        g = newGroup(filter, subjects)
        groups.set(filter, g)
        if (nc !== undefined) inbound.open(nc, g)
      }
      const group = g
      const local: LocalSub = { filter, handler }
      group.locals.push(local)
      const drop = (): void => {
        const i = group.locals.indexOf(local)
        if (i >= 0) group.locals.splice(i, 1)
        if (group.locals.length === 0 && groups.get(filter) === group) {
          groups.delete(filter)
          for (const s of group.subs) s.unsubscribe()
        }
      }
      if (nc !== undefined && up) {
        // The server answers the PING after the SUB: in place once it does (or refused, by then).
        await nc.flush().catch(() => {})
        if (group.subs.some((s) => s.isClosed())) {
          drop()
          throw new OutpostError(ErrorCode.NOT_AUTHORIZED, `NATS server refused subscription to ${filter} (${subjects.join(', ')})`, { details: { filter } })
        }
        await inbound.deliverRetained(store!, group, [local]).catch((err: unknown) => trouble.warn('retained-read-failed', { err: errorMessage(err), filter }, 'reading retained messages failed'))
      }
      const subscription: Subscription = {
        filter,
        async unsubscribe() {
          drop()
        },
      }
      return subscription
    },
    setWill(topic, payload, wopts) {
      willFrame = { topic, payload: Uint8Array.from(payload), qos: wopts?.qos ?? 1, retain: wopts?.retain === true }
      void will?.set(willFrame, up).catch((err: unknown) => trouble.warn('will-store-failed', { err: errorMessage(err) }, 'storing the will record failed; stored at the next connect'))
    },
    onStatus: (l) => status.on(l),
    statusStream: (signal) => status.stream(signal),
    stats: () => snapshotStats(stats),
    async close(copts) {
      if (closing) return
      const drainMs = copts?.drainMs ?? 5_000
      const wasUp = up
      closing = true
      cancelSleep?.()
      let timer: ReturnType<typeof setTimeout> | undefined
      const deadline = new Promise<void>((r) => (timer = setTimeout(r, drainMs)))
      await Promise.race([Promise.all([...inbound.inFlight, ...chains.values(), ...[...acks].map((a) => a.promise.catch(() => {}))]), deadline])
      if (nc !== undefined) {
        // A clean close takes the will record away first: no will for this connection.
        if (wasUp && up) await Promise.race([will?.clear().catch(() => {}), deadline])
        will?.stop()
        if (up) await Promise.race([nc.flush().catch(() => {}), deadline])
        up = false
        await nc.close().catch(() => {})
      }
      clearTimeout(timer)
      settleWaiters(new OutpostError(ErrorCode.BRIDGE_CLOSED, `bridge of ${opts.deviceId} closed`))
      status.set({ type: 'closed' })
    },
  }
}
