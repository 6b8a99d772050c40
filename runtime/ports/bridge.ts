import type { OutpostError } from '../errors.js'
import type { Envelope, PresencePayload } from '../wire/envelope.js'
import type { Topics } from '../wire/topics.js'

/** Connection state of a bridge, as a typed union (never a bare string event). */
export type BridgeStatus =
  | { type: 'idle' }
  | { type: 'connecting'; attempt: number }
  | { type: 'connected'; sessionPresent: boolean }
  | { type: 'disconnected'; error?: OutpostError }
  | { type: 'reconnecting'; attempt: number; delayMs: number }
  | { type: 'closed' }

/** One message handed to a subscriber. */
export interface InboundMessage {
  topic: string
  envelope: Envelope
  /** Delivered from the broker's retained store rather than published just now. */
  retained: boolean
  /** The broker says it may have delivered this message before (MQTT DUP flag). */
  redelivered: boolean
}

/**
 * Handles one inbound message. For QoS 1 the bridge acknowledges the message to the broker
 * only after the returned promise settles, so a handler that commits before resolving gets
 * "acknowledged after committed". A handler must not throw for bad content: that is its own
 * error reply to send.
 */
export type MessageHandler = (msg: InboundMessage) => void | Promise<void>

/** An active subscription; `unsubscribe` is idempotent. */
export interface Subscription {
  readonly filter: string
  unsubscribe(): Promise<void>
}

/** Options of a subscription. */
export interface SubscribeOptions {
  /**
   * Told of a zero-byte frame on a matching topic: the way MQTT clears a retained message
   * [MQTT-3.3.1-10]. `device` is the sender level of the topic (`<prefix>/<device>/…`). Without
   * this option such a frame is dropped as MALFORMED_FRAME, like any frame that does not decode.
   */
  onCleared?: (device: string, topic: string) => void
}

export interface PublishOptions {
  /** Keep as the topic's retained message (presence). */
  retain?: boolean
}

/** Counters every bridge keeps; dropped frames are counted by error code. */
export interface BridgeStats {
  published: number
  received: number
  /** Inbound frames dropped, by reason (MALFORMED_FRAME, FRAME_TOO_LARGE, …, LATE_REPLY). */
  dropped: Record<string, number>
}

/**
 * Moves envelopes between runtimes. The bridge owns its connection.
 *
 * - Delivery: at least once (QoS 1) for publish; a publish resolves once the broker has
 *   acknowledged it (memory: once it has been handed to every matching subscriber's queue).
 * - Ordering: messages from one bridge on one topic arrive in the order published.
 * - Request/reply: `request` sends a command and resolves with the reply envelope whose `corr`
 *   equals the command id; it rejects with TIMEOUT at the command's deadline, with
 *   BRIDGE_UNAVAILABLE when offline at call time, with BRIDGE_CLOSED after close.
 * - Presence: when the bridge goes away (close or a lost connection) an offline presence for
 *   its device is published as a retained message (MQTT: the last will), naming the services
 *   given to `declareServices`.
 * - Retained messages: a subscriber gets those of its filter when it subscribes, and again
 *   after every reconnect, whatever session the broker kept (they may arrive just after the
 *   status turns `connected`).
 * - `close` is idempotent: it stops accepting work, waits up to `drainMs` for in-flight
 *   requests and handlers, then disconnects.
 */
export interface Bridge {
  readonly deviceId: string
  readonly instanceId: string
  readonly topics: Topics
  /** Current connection state. */
  readonly status: BridgeStatus
  /**
   * Starts connecting (idempotent) and resolves once connected.
   * @throws BRIDGE_UNAVAILABLE when the first attempt fails; the bridge keeps retrying in the background.
   */
  connect(): Promise<void>
  /** Publishes an envelope on the topic it routes to. @throws BRIDGE_CLOSED, BRIDGE_UNAVAILABLE */
  publish(env: Envelope, opts?: PublishOptions): Promise<void>
  /**
   * Publishes an envelope already encoded with the wire codec (from the outbox), on its topic.
   * Same guarantees as `publish`; saves decoding and encoding again.
   * @throws BRIDGE_CLOSED, BRIDGE_UNAVAILABLE, MALFORMED_FRAME (memory bridge: the frame must decode)
   */
  publishEncoded(topic: string, frame: Uint8Array, opts?: PublishOptions): Promise<void>
  /** Subscribes to a topic filter (MQTT syntax). @throws BRIDGE_CLOSED */
  subscribe(filter: string, handler: MessageHandler, opts?: SubscribeOptions): Promise<Subscription>
  /**
   * Sets the services the offline presence of this device names (the last will and the goodbye
   * of `close`), so a process that starts while this device is away still knows what it offers.
   * Call it before `connect`: the will travels in the CONNECT packet, so a later call takes
   * effect at the next connect (the goodbye of `close` uses it at once).
   */
  declareServices(services: PresencePayload['services']): void
  /** Sends a command (its `deadline` is required) and waits for the reply. @throws TIMEOUT, BRIDGE_UNAVAILABLE, BRIDGE_CLOSED */
  request(command: Envelope): Promise<Envelope>
  /**
   * Sends again every command still waiting for its reply (or those addressed to `target`),
   * with the same message ids; receivers execute a command once and answer a repeat with the
   * cached reply. Called after a reconnect and when a target device announces itself again.
   */
  resendPending(target?: string): void
  /** Listens to status changes; returns the function that stops listening. */
  onStatus(listener: (status: BridgeStatus) => void): () => void
  /** Status changes as an async stream (ends when the bridge closes). */
  statusStream(signal?: AbortSignal): AsyncIterable<BridgeStatus>
  /** Snapshot of the counters. */
  stats(): BridgeStats
  /** Drains and disconnects; idempotent. */
  close(opts?: { drainMs?: number }): Promise<void>
}
