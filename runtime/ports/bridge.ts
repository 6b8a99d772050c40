import type { OutpostError } from '../errors.js'

/** Connection state of a bridge, as a typed union (never a bare string event). */
export type BridgeStatus =
  | { type: 'idle' }
  | { type: 'connecting'; attempt: number }
  | { type: 'connected'; sessionPresent: boolean }
  | { type: 'disconnected'; error?: OutpostError }
  | { type: 'reconnecting'; attempt: number; delayMs: number }
  | { type: 'closed' }

/** One message handed to a subscriber: bytes on a topic. */
export interface InboundFrame {
  readonly topic: string
  /** The bytes as published; zero bytes when a retained message was cleared (MQTT semantics). */
  readonly payload: Uint8Array
  /** Delivered from the broker's retained store rather than published just now. */
  readonly retained: boolean
  /** The broker says it may have delivered this message before (MQTT DUP flag; an in-process transport never redelivers). */
  readonly redelivered: boolean
  /**
   * Fast path of an in-process transport: the value a publisher handed over with `publishValue`
   * (see there), undefined otherwise. Only the messaging layer reads it; `payload` always holds
   * the bytes.
   */
  readonly value?: unknown
}

/**
 * Handles one inbound frame. For QoS 1 the transport acknowledges the message to the broker
 * only after the returned promise settles (fulfilled or rejected), so a handler that commits
 * before resolving gets "acknowledged after committed".
 */
export type FrameHandler = (frame: InboundFrame) => void | Promise<void>

/**
 * What a handler rejects with to leave its frame unacknowledged (a runtime that is stopping takes
 * no more messages): where the transport can, no acknowledgement is sent, so the broker sends the
 * frame again to the session's next connection (MQTT QoS 1: no PUBACK); where it cannot (memory,
 * NATS core), the frame is dropped. Any other rejection is logged and acknowledged.
 */
export class LeftUnacknowledged extends Error {
  constructor() {
    super('not acknowledged: stopping')
  }
}

/** A rejection with LeftUnacknowledged, for a handler to return. */
export const leaveUnacknowledged = (): Promise<never> => Promise.reject(new LeftUnacknowledged())

/** An active subscription; `unsubscribe` is idempotent. */
export interface Subscription {
  readonly filter: string
  unsubscribe(): Promise<void>
}

/** How a frame is published. */
export interface PublishOptions {
  /** 1 (default): at least once, settled by the broker's acknowledgement; 0: at most once, settled once written. */
  qos?: 0 | 1
  /** Keep as the topic's retained message; a zero-byte payload published retained clears it. */
  retain?: boolean
  /**
   * QoS 1 only: the caller holds the frame and publishes it again after a reconnect (the outbox
   * pump starts again from its oldest unacknowledged entry), so the transport keeps no copy: a
   * publish still awaiting its acknowledgement when the connection is lost rejects with
   * BRIDGE_UNAVAILABLE instead of being sent again by the transport on the next connection.
   * Without it an MQTT transport keeps such publishes and sends them again itself. An in-process
   * transport settles every publish at once, so it holds nothing either way.
   */
  callerResends?: boolean
}

/** Counters every bridge keeps; dropped frames are counted by error code. */
export interface BridgeStats {
  published: number
  received: number
  /** Inbound frames dropped, by reason (transport: FRAME_TOO_LARGE; messaging adds MALFORMED_FRAME, LATE_REPLY, …). */
  dropped: Record<string, number>
}

/**
 * Moves frames (bytes on topics) between processes, in the spirit of nats.js: it knows nothing
 * of envelopes, codecs or topic naming; those live once, in `runtime/messaging/`.
 *
 * - Publish: `publish` settles with the acknowledgement: QoS 1, the broker's PUBACK; QoS 0,
 *   once written; memory, once handed to every matching subscriber.
 *   @throws BRIDGE_UNAVAILABLE while not connected, BRIDGE_CLOSED after close. A connection the
 *   broker has accepted takes publishes even while its subscriptions are being restored (the
 *   status may still say `connecting`): messages of a restored session arrive then, and a
 *   subscriber must be able to answer them.
 * - Subscribe: MQTT filter syntax (`+`, `#`); a handler's settlement is the acknowledgement.
 *   A subscriber gets the retained messages of its filter when it subscribes, and again after
 *   every reconnect. Ordering: frames from one publisher on one topic arrive in order.
 * - Retained: a zero-byte payload published retained clears the topic's retained message and
 *   reaches subscribers as an empty payload.
 * - Oversized inbound frames (over `maxPayloadBytes`) are dropped and acknowledged by the
 *   transport itself, counted as FRAME_TOO_LARGE in `stats().dropped`.
 * - Last will: `setWill` names a frame the broker publishes when the connection is lost, never
 *   on a clean `close`.
 * - `close` is idempotent: it stops taking publishes and subscriptions, waits up to `drainMs`
 *   for handlers and publishes in flight, then disconnects.
 *
 * Zero-serialization fast path: an in-process transport may offer `publishValue`. The value
 * reaches subscribers as `InboundFrame.value`, and `payload` is encoded (once per publish, with
 * the encoder given) only if a subscriber reads it, so subscribers of the bytes API still get
 * bytes. Only the messaging layer uses it, and only when it is there; semantics (ordering,
 * retained, acknowledgement) are those of `publish`, except that it hands over at once and says
 * so by returning (no promise to settle, which would cost a microtask per message).
 */
export interface Bridge {
  /** The identity it connects as (MQTT: the default client id). A topic level. */
  readonly deviceId: string
  /** Largest inbound payload taken, bytes. */
  readonly maxPayloadBytes: number
  /** Current connection state. */
  readonly status: BridgeStatus
  /**
   * Starts connecting (idempotent) and resolves once connected (subscriptions in place).
   * @throws BRIDGE_UNAVAILABLE when the first attempt fails; the bridge keeps retrying in the background. BRIDGE_CLOSED after close.
   */
  connect(): Promise<void>
  /** Publishes bytes on a topic. @throws BRIDGE_CLOSED, BRIDGE_UNAVAILABLE */
  publish(topic: string, payload: Uint8Array, opts?: PublishOptions): Promise<void>
  /**
   * Optional fast path of in-process transports (see the interface's doc): hands `value` to every
   * matching subscriber before it returns. @throws BRIDGE_CLOSED, BRIDGE_UNAVAILABLE (synchronously)
   */
  publishValue?(topic: string, value: unknown, encode: (value: unknown) => Uint8Array, opts?: PublishOptions): void
  /** Subscribes to a topic filter; may be called before `connect`. @throws BRIDGE_CLOSED, BRIDGE_UNAVAILABLE (the broker refused it) */
  subscribe(filter: string, handler: FrameHandler): Promise<Subscription>
  /**
   * Sets the frame the broker publishes on this connection's behalf when it is lost (MQTT: the
   * will of the CONNECT packet, so a call takes effect at the next connect).
   */
  setWill(topic: string, payload: Uint8Array, opts?: PublishOptions): void
  /** Listens to status changes; returns the function that stops listening. */
  onStatus(listener: (status: BridgeStatus) => void): () => void
  /** Status changes as an async stream, starting with the current one (ends when the bridge closes). */
  statusStream(signal?: AbortSignal): AsyncIterable<BridgeStatus>
  /** Snapshot of the counters. */
  stats(): BridgeStats
  /** Drains and disconnects; idempotent. */
  close(opts?: { drainMs?: number }): Promise<void>
}
