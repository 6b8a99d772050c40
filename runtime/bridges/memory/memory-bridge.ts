import { ErrorCode, OutpostError } from '../../errors.js'
import type { Bridge, InboundMessage, MessageHandler, Subscription } from '../../ports/bridge.js'
import type { Envelope, PresencePayload } from '../../wire/envelope.js'
import { createMessageIdFactory } from '../../wire/message-id.js'
import { createEnvelopeCodec } from '../../wire/codec.js'
import { createTopics, topicMatches, assertTopicSegment, isTopicSegment, type Topics } from '../../wire/topics.js'
import { createBridgeStats, createPendingReplies, createStatusHub, snapshotStats } from '../bridge-kit.js'
import { offlinePresence } from '../presence.js'

interface HubSubscription {
  filter: string
  owner: object
  handler: MessageHandler
  /** Told of an empty frame on a matching topic (a cleared retained message), if it asked. */
  cleared?: (topic: string) => void
  track(p: Promise<void>): void
}

/** The in-process meeting point of memory bridges: subscriptions and retained messages. */
export interface MemoryHub {
  /** Number of live subscriptions (for tests and diagnostics). */
  readonly subscriptionCount: number
}

interface HubInternals extends MemoryHub {
  add(sub: HubSubscription): void
  remove(sub: HubSubscription): void
  removeOwner(owner: object): void
  deliver(topic: string, env: Envelope, retain: boolean): void
  /** What a broker does with an empty frame: forgets the retained message (if `retain`) and passes it on. */
  clear(topic: string, retain: boolean): void
  /** True when some subscription matches the topic. */
  wants(topic: string): boolean
}

/** Creates a hub that memory bridges in one process share (one per "network"). */
export function createMemoryHub(): MemoryHub {
  const subs: HubSubscription[] = []
  const retained = new Map<string, Envelope>()
  // Topic → matching subscriptions; cleared whenever subscriptions change.
  const routes = new Map<string, HubSubscription[]>()
  const match = (topic: string): HubSubscription[] => {
    let hit = routes.get(topic)
    if (hit === undefined) {
      hit = subs.filter((s) => topicMatches(s.filter, topic))
      if (routes.size > 10_000) routes.clear()
      routes.set(topic, hit)
    }
    return hit
  }
  // Deliveries wait in one queue drained by a single microtask: asynchronous like a network,
  // in publish order, without a closure and a microtask per delivery.
  let queue: HubSubscription[] = []
  let msgs: InboundMessage[] = []
  let draining = false
  const drain = (): void => {
    draining = false
    const subsNow = queue
    const msgsNow = msgs
    queue = []
    msgs = []
    for (let i = 0; i < subsNow.length; i++) {
      const sub = subsNow[i]!
      try {
        const r = sub.handler(msgsNow[i]!)
        if (r !== undefined) sub.track(r)
      } catch {
        // A handler that throws loses only its own message; the hub keeps serving.
      }
    }
  }
  const hand = (sub: HubSubscription, msg: InboundMessage): void => {
    queue.push(sub)
    msgs.push(msg)
    if (!draining) {
      draining = true
      queueMicrotask(drain)
    }
  }
  const hub: HubInternals = {
    get subscriptionCount() {
      return subs.length
    },
    add(sub) {
      subs.push(sub)
      routes.clear()
      for (const [topic, env] of retained) {
        if (topicMatches(sub.filter, topic)) hand(sub, { topic, envelope: env, retained: true, redelivered: false })
      }
    },
    remove(sub) {
      const i = subs.indexOf(sub)
      if (i >= 0) subs.splice(i, 1)
      routes.clear()
    },
    removeOwner(owner) {
      for (let i = subs.length - 1; i >= 0; i--) if (subs[i]!.owner === owner) subs.splice(i, 1)
      routes.clear()
    },
    wants: (topic) => match(topic).length > 0,
    deliver(topic, env, retain) {
      if (retain) retained.set(topic, env)
      const targets = match(topic)
      for (let i = 0; i < targets.length; i++) hand(targets[i]!, { topic, envelope: env, retained: false, redelivered: false })
    },
    clear(topic, retain) {
      if (retain) retained.delete(topic)
      // Queued like any delivery, so it keeps its place among the messages published before it.
      for (const sub of match(topic)) {
        const told = sub.cleared
        if (told !== undefined) hand({ ...sub, handler: () => told(topic) }, CLEARED)
      }
    },
  }
  return hub
}

// Stands in for the message of a cleared-retained delivery (its handler ignores it).
const CLEARED = { topic: '', envelope: undefined as unknown as Envelope, retained: false, redelivered: false } satisfies InboundMessage

// Handing over to the hub completes synchronously: one settled promise serves every publish.
const DELIVERED: Promise<void> = Promise.resolve()

export interface MemoryBridgeOptions {
  hub: MemoryHub
  deviceId: string
  instanceId?: string
  topicPrefix?: string
  /** Clock for deadlines (epoch ms). */
  now?: () => number
}

/**
 * Creates a memory bridge: the embedded default for services in one process. Envelopes are
 * handed over as objects (no encoding), with the same routing, deadlines and errors as MQTT.
 */
export function createMemoryBridge(opts: MemoryBridgeOptions): Bridge {
  assertTopicSegment('device id', opts.deviceId)
  const hub = opts.hub as HubInternals
  const topics: Topics = createTopics(opts.topicPrefix)
  const now = opts.now ?? Date.now
  const instanceId = opts.instanceId ?? createMessageIdFactory()().slice(-10)
  const status = createStatusHub()
  const codec = createEnvelopeCodec()
  const pending = createPendingReplies(now)
  const stats = createBridgeStats()
  const owner = {}
  const inFlight = new Set<Promise<void>>()
  const track = (p: Promise<void>): void => {
    const q = p.catch(() => {}).finally(() => inFlight.delete(q))
    inFlight.add(q)
  }
  let replySub: HubSubscription | undefined
  let closing = false
  let services: PresencePayload['services'] = []

  const ensureOpen = (): void => {
    if (closing) throw new OutpostError(ErrorCode.BRIDGE_CLOSED, `bridge of ${opts.deviceId} is closed`)
  }

  /** Counts a publish the bridge may make now. @throws BRIDGE_CLOSED, BRIDGE_UNAVAILABLE */
  const admit = (): void => {
    ensureOpen()
    if (status.current.type !== 'connected') {
      throw new OutpostError(ErrorCode.BRIDGE_UNAVAILABLE, `bridge of ${opts.deviceId} is not connected`, { retryable: true })
    }
    stats.published++
  }
  /** Hands an envelope to the hub on a topic. @throws BRIDGE_CLOSED, BRIDGE_UNAVAILABLE */
  const deliver = (topic: string, env: Envelope, retain: boolean): void => {
    admit()
    hub.deliver(topic, env, retain)
  }
  /** Hands an envelope to the hub on the topic it routes to. @throws also INVALID_ENVELOPE */
  const send = (env: Envelope, retain: boolean): void => deliver(topics.topicOf(env), env, retain)

  const bridge: Bridge = {
    deviceId: opts.deviceId,
    instanceId,
    topics,
    get status() {
      return status.current
    },
    async connect() {
      ensureOpen()
      if (status.current.type === 'connected') return
      status.set({ type: 'connecting', attempt: 1 })
      replySub = {
        filter: topics.replyFilter(opts.deviceId),
        owner,
        track,
        handler: (msg) => {
          stats.received++
          if (!pending.settle(msg.envelope)) stats.drop('LATE_REPLY')
        },
      }
      hub.add(replySub)
      status.set({ type: 'connected', sessionPresent: false })
    },
    publish(env, popts) {
      try {
        send(env, popts?.retain === true)
      } catch (err) {
        return Promise.reject(err)
      }
      return DELIVERED
    },
    publishEncoded(topic, frame, popts) {
      if (frame.length === 0) {
        // An empty frame clears a retained message, as on a broker [MQTT-3.3.1-10].
        try {
          admit()
        } catch (err) {
          return Promise.reject(err)
        }
        hub.clear(topic, popts?.retain === true)
        return DELIVERED
      }
      // The hub hands over objects, so an encoded frame is decoded once here, unless nobody
      // would receive it (a device's result events that only a broker would carry on).
      if (popts?.retain !== true && !hub.wants(topic)) {
        try {
          admit()
        } catch (err) {
          return Promise.reject(err)
        }
        return DELIVERED
      }
      const decoded = codec.decode(frame)
      if (!decoded.ok) return Promise.reject(decoded.error)
      try {
        deliver(topic, decoded.envelope, popts?.retain === true)
      } catch (err) {
        return Promise.reject(err)
      }
      return DELIVERED
    },
    async subscribe(filter, handler, sopts) {
      ensureOpen()
      const onCleared = sopts?.onCleared
      const senderAt = topics.prefix.length + 1
      const sub: HubSubscription = {
        filter,
        owner,
        track,
        handler: (msg) => {
          stats.received++
          return handler(msg)
        },
        cleared:
          onCleared === undefined
            ? undefined
            : (topic) => {
                stats.received++
                // The sender level of `<prefix>/<device>/…`, as the MQTT bridge takes it.
                if (!topic.startsWith(`${topics.prefix}/`)) return
                const end = topic.indexOf('/', senderAt)
                const device = topic.slice(senderAt, end < 0 ? undefined : end)
                if (isTopicSegment(device)) onCleared(device, topic)
              },
      }
      hub.add(sub)
      const subscription: Subscription = {
        filter,
        async unsubscribe() {
          hub.remove(sub)
        },
      }
      return subscription
    },
    async request(command) {
      ensureOpen()
      if (status.current.type !== 'connected') {
        throw new OutpostError(ErrorCode.BRIDGE_UNAVAILABLE, `bridge of ${opts.deviceId} is not connected`, { retryable: true })
      }
      const reply = pending.wait(command, now())
      try {
        send(command, false)
      } catch (err) {
        pending.fail(command.id, err as OutpostError)
      }
      return reply
    },
    declareServices(declared) {
      services = declared
    },
    resendPending() {
      // The hub never loses a message, so there is nothing to send again.
    },
    onStatus: (l) => status.on(l),
    statusStream: (signal) => status.stream(signal),
    stats: () => snapshotStats(stats),
    async close(copts) {
      if (closing) return
      closing = true
      const drainMs = copts?.drainMs ?? 5_000
      await pending.drained(drainMs)
      await Promise.race([Promise.all(inFlight), new Promise((r) => setTimeout(r, drainMs).unref())])
      if (status.current.type === 'connected') {
        // What a broker does with a last will: tell everyone this device went away.
        hub.deliver(topics.presenceTopic(opts.deviceId), offlinePresence(opts.deviceId, instanceId, now(), services), true)
      }
      hub.removeOwner(owner)
      pending.failAll(new OutpostError(ErrorCode.BRIDGE_CLOSED, `bridge of ${opts.deviceId} closed`))
      status.set({ type: 'closed' })
    },
  }
  return bridge
}
