import { ErrorCode, OutpostError } from '../../errors.js'
import type { Bridge, FrameHandler, InboundFrame, PublishOptions, Subscription } from '../../ports/bridge.js'
import { assertTopicSegment, topicMatches } from '../../wire/topics.js'
import { createBridgeStats, createRoutes, createStatusHub, DEFAULT_MAX_PAYLOAD_BYTES, snapshotStats } from '../bridge-kit.js'

/** A subscription as the hub keeps it: `take` counts, checks and runs the subscriber's handler. */
interface HubSubscription {
  filter: string
  owner: object
  take(frame: InboundFrame): void
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
  /** What a broker does with a publish: keeps it as retained (a zero-byte one clears) and hands it to every match. */
  deliver(frame: InboundFrame, retain: boolean): void
}

/** A plain frame: bytes published with `publish`. */
class BytesFrame implements InboundFrame {
  readonly redelivered = false
  constructor(
    readonly topic: string,
    readonly payload: Uint8Array,
    readonly retained: boolean,
  ) {}
}

/**
 * A frame published with `publishValue`: the value goes over as is, and its bytes are made (once
 * per publish: every subscriber gets this one object) only when a subscriber reads `payload`.
 */
class ValueFrame implements InboundFrame {
  readonly redelivered = false
  private made: Uint8Array | undefined
  constructor(
    readonly topic: string,
    readonly value: unknown,
    private readonly encode: (value: unknown) => Uint8Array,
    readonly retained: boolean,
  ) {}
  get payload(): Uint8Array {
    return (this.made ??= this.encode(this.value))
  }
  /** The same publish, as a retained message handed to a new subscriber. */
  asRetained(): ValueFrame {
    return new ValueFrame(this.topic, this.value, this.encode, true)
  }
}

const asRetained = (f: InboundFrame): InboundFrame =>
  f instanceof ValueFrame ? f.asRetained() : new BytesFrame(f.topic, f.payload, true)

/** Creates a hub that memory bridges in one process share (one per "network"). */
export function createMemoryHub(): MemoryHub {
  const routes = createRoutes<HubSubscription>()
  const retained = new Map<string, InboundFrame>()
  // Deliveries wait in one queue drained by a single microtask: asynchronous like a network,
  // in publish order, without a closure and a microtask per delivery.
  let queue: HubSubscription[] = []
  let frames: InboundFrame[] = []
  let draining = false
  const drain = (): void => {
    draining = false
    const subsNow = queue
    const framesNow = frames
    queue = []
    frames = []
    for (let i = 0; i < subsNow.length; i++) subsNow[i]!.take(framesNow[i]!)
  }
  const hand = (sub: HubSubscription, frame: InboundFrame): void => {
    queue.push(sub)
    frames.push(frame)
    if (!draining) {
      draining = true
      queueMicrotask(drain)
    }
  }
  const hub: HubInternals = {
    get subscriptionCount() {
      return routes.all.length
    },
    add(sub) {
      routes.add(sub)
      for (const [topic, frame] of retained) if (topicMatches(sub.filter, topic)) hand(sub, asRetained(frame))
    },
    remove(sub) {
      routes.remove(sub)
    },
    removeOwner(owner) {
      routes.removeWhere((s) => s.owner === owner)
    },
    deliver(frame, retain) {
      if (retain) {
        // A zero-byte retained publish clears the topic's retained message [MQTT-3.3.1-10].
        if (frame.value === undefined && frame.payload.length === 0) retained.delete(frame.topic)
        else retained.set(frame.topic, frame)
      }
      const targets = routes.match(frame.topic)
      for (let i = 0; i < targets.length; i++) hand(targets[i]!, frame)
    },
  }
  return hub
}

// Handing over to the hub completes synchronously: one settled promise serves every publish.
const DELIVERED: Promise<void> = Promise.resolve()

/** Options of a memory bridge. */
export interface MemoryBridgeOptions {
  hub: MemoryHub
  /** The identity it connects as (a topic level). */
  deviceId: string
  /** Largest inbound payload taken, bytes (default 256 KiB); larger frames are dropped as FRAME_TOO_LARGE. */
  maxPayloadBytes?: number
}

/**
 * Creates a memory bridge: frames between bridges of one hub (one process), with a broker's
 * semantics (retained messages, wildcards, ordering per topic, acknowledgement once handed to
 * every subscriber). A memory connection is never lost, so it never redelivers and its last will
 * is never published. Offers `publishValue`, the zero-serialization fast path.
 * @throws INVALID_CONFIG for a device id that cannot be a topic level
 */
export function createMemoryBridge(opts: MemoryBridgeOptions): Bridge {
  assertTopicSegment('device id', opts.deviceId)
  const hub = opts.hub as HubInternals
  const maxPayloadBytes = opts.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES
  const status = createStatusHub()
  const stats = createBridgeStats()
  const owner = {}
  // Subscriptions made before `connect`: taken up by the hub when the bridge connects.
  const waiting: HubSubscription[] = []
  const inFlight = new Set<Promise<void>>()
  const track = (p: Promise<void>): void => {
    const q = p.catch(() => {}).finally(() => inFlight.delete(q))
    inFlight.add(q)
  }
  let closing = false

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

  return {
    deviceId: opts.deviceId,
    maxPayloadBytes,
    get status() {
      return status.current
    },
    async connect() {
      ensureOpen()
      if (status.current.type === 'connected') return
      status.set({ type: 'connecting', attempt: 1 })
      for (const sub of waiting.splice(0)) hub.add(sub)
      status.set({ type: 'connected', sessionPresent: false })
    },
    publish(topic, payload, popts?: PublishOptions) {
      try {
        admit()
      } catch (err) {
        return Promise.reject(err)
      }
      hub.deliver(new BytesFrame(topic, payload, false), popts?.retain === true)
      return DELIVERED
    },
    publishValue(topic, value, encode, popts?: PublishOptions) {
      admit()
      hub.deliver(new ValueFrame(topic, value, encode, false), popts?.retain === true)
    },
    async subscribe(filter: string, handler: FrameHandler) {
      ensureOpen()
      const sub: HubSubscription = {
        filter,
        owner,
        take(frame) {
          stats.received++
          if (frame.value === undefined && frame.payload.length > maxPayloadBytes) {
            stats.drop(ErrorCode.FRAME_TOO_LARGE)
            return
          }
          try {
            const r = handler(frame)
            if (r !== undefined) track(r)
          } catch {
            // A handler that throws loses only its own frame; the hub keeps serving.
          }
        },
      }
      if (status.current.type === 'connected') hub.add(sub)
      else waiting.push(sub)
      const subscription: Subscription = {
        filter,
        async unsubscribe() {
          const i = waiting.indexOf(sub)
          if (i >= 0) waiting.splice(i, 1)
          else hub.remove(sub)
        },
      }
      return subscription
    },
    setWill() {
      // A memory connection is never lost, so there is no will to publish; a clean close sends none.
    },
    onStatus: (l) => status.on(l),
    statusStream: (signal) => status.stream(signal),
    stats: () => snapshotStats(stats),
    async close(copts) {
      if (closing) return
      closing = true
      const drainMs = copts?.drainMs ?? 5_000
      if (inFlight.size > 0) {
        let timer: ReturnType<typeof setTimeout> | undefined
        await Promise.race([Promise.all(inFlight), new Promise<void>((r) => (timer = setTimeout(r, drainMs)))])
        clearTimeout(timer)
      }
      hub.removeOwner(owner)
      waiting.length = 0
      status.set({ type: 'closed' })
    },
  }
}
