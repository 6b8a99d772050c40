// The port every cloud target implements (NATS JetStream, RabbitMQ): connect, send one message
// and settle when the target has it stored, close. The forward queue and its pump
// (forward-queue.ts, forward-pump.ts) own ordering, retries, backoff, dead letters and counters;
// a target only speaks its protocol.
import { ErrorCode, OutpostError } from '../../runtime/errors.js'

/** How a forwarded event's body is written. */
export type ForwardEncoding = 'cbor' | 'json'

/** One event on its way to one target, as the forward queue keeps it. */
export interface ForwardMessage {
  /** Position in the forward queue (the order events reached the gateway). */
  readonly seq: number
  /** The envelope id (the target's dedupe key is `dedupeKey(message)`, which adds the device). */
  readonly id: string
  /** The device that sent it. */
  readonly device: string
  /** NATS subject or AMQP routing key, from the route's template. */
  readonly subject: string
  /**
   * The envelope's fields as headers (`Outpost-Device`, `Outpost-Service`, `Outpost-Version`,
   * `Outpost-Event`, `Outpost-At`, `traceparent` when set, …); see docs/forwarding.md.
   */
  readonly headers: Readonly<Record<string, string>>
  /** `application/cbor` (the envelope frame as the device sent it) or `application/json`. */
  readonly contentType: string
  readonly body: Uint8Array
  /** When the gateway received it, epoch ms. */
  readonly receivedAt: number
  /** What its row counts for in the target's `maxBytes` (forward-queue.ts `rowBytes`), when known. */
  readonly bytes?: number
}

/** What the target said about a message it stored. */
export interface SendResult {
  /** The target already had this id (JetStream's duplicate window): stored once, not twice. */
  duplicate: boolean
}

/**
 * A cloud messaging system the gateway forwards events to.
 *
 * - `connect()` connects and creates or binds what the configuration names (a stream, an
 *   exchange). Rejects with TARGET_UNAVAILABLE when the server cannot be reached (retried with
 *   backoff by the pump) and TARGET_REJECTED when it refuses the setup for good (a stream whose
 *   subjects overlap another's, a permission denied): the pump retries that too, slowly, and logs it.
 * - `send()` publishes one message; many are in flight at once (the pump keeps a window) and the
 *   target must put them on the wire in call order. It resolves once the target confirmed the
 *   message as stored (JetStream PubAck, AMQP publisher confirm) and rejects with
 *   TARGET_REJECTED when this message can never be stored (it is dead-lettered with the reason)
 *   or with any other error when sending might work later (the pump reconnects and sends again).
 * - `onDown` tells the pump that the connection was lost (between sends too).
 * - `close()` ends the connection; sends in flight reject.
 */
export interface ForwardTarget {
  readonly name: string
  readonly type: 'nats' | 'rabbitmq'
  connect(): Promise<void>
  send(message: ForwardMessage): Promise<SendResult>
  onDown(listener: (err: Error) => void): () => void
  close(): Promise<void>
}

/** The target refused this message (or its setup) for good; the reason goes to the dead-letter table. */
export function targetRejected(target: string, reason: string, cause?: unknown): OutpostError {
  return new OutpostError(ErrorCode.TARGET_REJECTED, `${target}: ${reason}`, { cause, details: { target, reason } })
}

/** The target cannot be reached now; the message stays queued. */
export function targetUnavailable(target: string, reason: string, cause?: unknown): OutpostError {
  return new OutpostError(ErrorCode.TARGET_UNAVAILABLE, `${target}: ${reason}`, { cause, retryable: true, details: { target } })
}

/**
 * The key a target dedupes a message by (`Nats-Msg-Id`, AMQP `message-id`): the sending device
 * and the envelope id, `<device>/<id>`. A device picks its envelope ids, and its topic (which
 * the gateway's ACL keeps to its own id) names the device: with the device in the key, a device
 * that publishes another device's future ids cannot make the target drop that device's events
 * as duplicates.
 */
export function dedupeKey(m: Pick<ForwardMessage, 'device' | 'id'>): string {
  return `${m.device}/${m.id}`
}
