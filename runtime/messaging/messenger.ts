import { pino, type Logger } from 'pino'
import { ErrorCode, OutpostError, errorMessage, isOutpostError } from '../errors.js'
import type { Bridge, BridgeStats, BridgeStatus, FrameHandler, PublishOptions, Subscription } from '../ports/bridge.js'
import { systemClock, type Clock } from '../ports/clock.js'
import type { SentReply } from '../ports/inbox.js'
import { createEnvelopeCodec } from '../wire/codec.js'
import type { Envelope, PresencePayload } from '../wire/envelope.js'
import { createMessageIdFactory } from '../wire/message-id.js'
import { createTopics, type Topics } from '../wire/topics.js'
import { createInboundGate, mergeDrops, type InboundMessage } from './inbound.js'
import { createPendingReplies } from './pending-replies.js'
import { offlinePresence } from './presence.js'

export type { InboundMessage } from './inbound.js'

/**
 * Handles one inbound envelope. Its settlement is the acknowledgement to the broker (QoS 1), so a
 * handler that commits before resolving gets "acknowledged after committed". A handler must not
 * throw for bad content: that is its own error reply to send.
 */
export type MessageHandler = (msg: InboundMessage) => void | Promise<void>

/** Options of an envelope subscription. */
export interface SubscribeOptions {
  /**
   * Told of a zero-byte frame on a matching topic: the way MQTT clears a retained message
   * [MQTT-3.3.1-10]. `device` is the sender level of the topic (`<prefix>/<device>/…`). Without
   * this option such a frame is dropped as MALFORMED_FRAME, like any frame that does not decode.
   */
  onCleared?: (device: string, topic: string) => void
}

/** How an envelope is published. */
export interface EnvelopePublishOptions {
  /** Keep as the topic's retained message (presence, the contract document). */
  retain?: boolean
  /**
   * The caller publishes again itself if it must: the transport keeps no copy to send again after
   * a reconnect, and a publish whose connection is lost before its acknowledgement rejects
   * (`PublishOptions.callerResends`).
   */
  callerResends?: boolean
}

/** What the runtime decides about its envelopes, whatever bridge carries them. */
export interface MessagingOptions {
  /** First level of every topic (default `ob`). */
  topicPrefix?: string
  /** This process's instance id, carried by every envelope (default: a new random one). */
  instanceId?: string
  /**
   * QoS of replies (default 0). A reply only matters while its caller waits, and a caller that
   * lost its connection re-sends its pending commands on reconnect (the device's inbox answers
   * a repeated command id with the cached reply), so replies need no PUBACK of their own:
   * two packets fewer per call. Set 1 to have the broker hold replies for a caller that is away.
   */
  replyQos?: 0 | 1
}

/** Options of a messenger: the bridge it sends through, and the messaging options. */
export interface MessengerOptions extends MessagingOptions {
  bridge: Bridge
  /** Time of envelopes and requests' deadlines (default: the system clock); the runtime passes its own. */
  clock?: Clock
  /** Where dropped frames and failed re-sends are logged (at a bounded rate). */
  logger?: Logger
}

/**
 * Envelopes over a frames-only `Bridge`: the one layer that names topics, encodes and decodes,
 * matches replies to requests with deadlines, re-sends what is unanswered and keeps presence.
 *
 * - Delivery: at least once (QoS 1) for commands, events and presence; replies at `replyQos`.
 * - Request/reply: `request` sends a command and resolves with the reply envelope whose `corr`
 *   equals the command id, from the device the command went to; it rejects with TIMEOUT at the
 *   command's deadline, with BRIDGE_UNAVAILABLE when offline at call time, with BRIDGE_CLOSED
 *   after close. Commands still waiting are sent again (same id) after a reconnect.
 * - Inbound: a frame that does not decode, or whose `src` is not the sender level of its topic,
 *   is dropped and counted by code (`stats().dropped`), logged once a minute per reason.
 * - Presence: the bridge's last will is the offline presence naming the services given to
 *   `declareServices`; `close` publishes it itself (a clean close sends no will).
 * - `close` is idempotent: it stops taking work, waits up to `drainMs` for pending requests,
 *   says goodbye, then closes the bridge.
 */
export interface Messenger {
  readonly deviceId: string
  readonly instanceId: string
  readonly topics: Topics
  /** The frames-only bridge underneath (the outbox pump publishes its stored frames on it). */
  readonly transport: Bridge
  /** Current connection state (the bridge's). */
  readonly status: BridgeStatus
  /**
   * Starts connecting (idempotent) and resolves once connected.
   * @throws BRIDGE_UNAVAILABLE when the first attempt fails; the bridge keeps retrying in the background.
   */
  connect(): Promise<void>
  /** Publishes an envelope on the topic it routes to. @throws BRIDGE_CLOSED, BRIDGE_UNAVAILABLE, INVALID_ENVELOPE, INVALID_TOPIC_LEVEL */
  publish(env: Envelope, opts?: EnvelopePublishOptions): Promise<void>
  /**
   * Encodes a reply once, for `publishReply` and for the inbox to keep: its topic and frame, or
   * on an in-process fast path its topic and the envelope itself (nothing is encoded there).
   * @throws INVALID_ENVELOPE, INVALID_TOPIC_LEVEL, FRAME_TOO_LARGE
   */
  prepareReply(reply: Envelope): SentReply
  /**
   * Publishes a reply as `prepareReply` made it (or as an inbox kept it) at the reply QoS: a
   * frame's bytes go out unchanged, neither decoded nor encoded again; an envelope goes out as
   * `publish` sends it.
   * @throws BRIDGE_CLOSED, BRIDGE_UNAVAILABLE (and, for an envelope, those of `prepareReply`)
   */
  publishReply(reply: SentReply): Promise<void>
  /** Subscribes to a topic filter (MQTT syntax) for envelopes. @throws BRIDGE_CLOSED */
  subscribe(filter: string, handler: MessageHandler, opts?: SubscribeOptions): Promise<Subscription>
  /**
   * Sets the services the offline presence of this device names (the last will and the goodbye
   * of `close`), so a process that starts while this device is away still knows what it offers.
   * Call it before `connect`: the will travels in the CONNECT packet.
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
  /** The bridge's counters, with the drops of the messaging layer added. */
  stats(): BridgeStats
  /** Drains, says goodbye and closes the bridge; idempotent. */
  close(opts?: { drainMs?: number }): Promise<void>
}

const AT_LEAST_ONCE: PublishOptions = { qos: 1, retain: false }
const AT_LEAST_ONCE_RETAINED: PublishOptions = { qos: 1, retain: true }
// Published once: no copy kept by the transport to send again after a reconnect.
const AT_LEAST_ONCE_ONCE: PublishOptions = { qos: 1, retain: false, callerResends: true }
const AT_LEAST_ONCE_RETAINED_ONCE: PublishOptions = { qos: 1, retain: true, callerResends: true }
const AT_MOST_ONCE: PublishOptions = { qos: 0, retain: false }

/** A command waiting for its reply, encoded, so it can be sent again as it was. */
interface Unanswered {
  topic: string
  frame: Uint8Array
}

// Handing over on the fast path completes at once: one settled promise serves every publish.
const SENT: Promise<void> = Promise.resolve()

/** Creates the messenger of one runtime over `opts.bridge`. @throws INVALID_CONFIG for a bad topic prefix */
export function createMessenger(opts: MessengerOptions): Messenger {
  const transport = opts.bridge
  const deviceId = transport.deviceId
  const topics = createTopics(opts.topicPrefix)
  const clock = opts.clock ?? systemClock
  const instanceId = opts.instanceId ?? createMessageIdFactory()().slice(-10)
  const replyQos = opts.replyQos ?? 0
  const baseLog = opts.logger ?? pino({ level: 'silent' })
  const log = baseLog.bindings().device === undefined ? baseLog.child({ device: deviceId }) : baseLog
  const codec = createEnvelopeCodec({ maxFrameBytes: transport.maxPayloadBytes })
  const encodeValue = (value: unknown): Uint8Array => codec.encode(value as Envelope)
  // The fast path of an in-process bridge: envelopes go over as objects, encoded only for a
  // subscriber that reads the bytes.
  const publishValue = transport.publishValue?.bind(transport)
  const gate = createInboundGate(codec, topics.prefix, log, clock)
  const pending = createPendingReplies(clock)
  const presenceTopic = topics.presenceTopic(deviceId)
  let services: PresencePayload['services'] = []
  let replies: Promise<Subscription> | undefined
  let closing = false
  let lost = false

  const offline = (): Uint8Array => codec.encode(offlinePresence(deviceId, instanceId, clock.now(), services))
  transport.setWill(presenceTopic, offline(), AT_LEAST_ONCE_RETAINED)

  /**
   * Rejects what cannot be sent now. Whether the link takes a publish is the transport's call
   * (it throws BRIDGE_UNAVAILABLE): an MQTT connection the broker accepted takes replies while
   * its subscriptions are restored, before its status turns `connected`. @throws BRIDGE_CLOSED
   */
  const admit = (): void => {
    if (closing) throw new OutpostError(ErrorCode.BRIDGE_CLOSED, `bridge of ${deviceId} is closed`)
  }
  /** Hands an envelope over on the fast path. @throws BRIDGE_CLOSED, BRIDGE_UNAVAILABLE */
  const hand = (topic: string, env: Envelope, popts: PublishOptions): void => publishValue!(topic, env, encodeValue, popts)

  const onReply: FrameHandler = (frame) => {
    const env = gate.envelopeOf(frame)
    if (env === undefined || env.kind !== 'reply') return
    if (!pending.settle(env)) gate.drop('LATE_REPLY')
  }

  // After a lost connection, the commands still waiting are sent again: their replies (QoS 0)
  // or the commands themselves may have been lost with it.
  transport.onStatus((s) => {
    if (s.type === 'disconnected' || s.type === 'reconnecting') lost = true
    else if (s.type === 'connected' && lost) {
      lost = false
      messenger.resendPending()
    }
  })

  const messenger: Messenger = {
    deviceId,
    instanceId,
    topics,
    transport,
    get status() {
      return transport.status
    },
    async connect() {
      if (closing) throw new OutpostError(ErrorCode.BRIDGE_CLOSED, `bridge of ${deviceId} is closed`)
      await (replies ??= transport.subscribe(topics.replyFilter(deviceId), onReply))
      await transport.connect()
    },
    publish(env, popts) {
      const qos =
        popts?.callerResends === true
          ? popts.retain === true
            ? AT_LEAST_ONCE_RETAINED_ONCE
            : AT_LEAST_ONCE_ONCE
          : popts?.retain === true
            ? AT_LEAST_ONCE_RETAINED
            : env.kind === 'reply' && replyQos === 0
              ? AT_MOST_ONCE
              : AT_LEAST_ONCE
      let frame: Uint8Array
      let topic: string
      try {
        admit()
        topic = topics.topicOf(env)
        if (publishValue !== undefined) {
          hand(topic, env, qos)
          return SENT
        }
        frame = codec.encode(env)
      } catch (err) {
        return Promise.reject(err)
      }
      return transport.publish(topic, frame, qos)
    },
    prepareReply(reply) {
      const topic = topics.topicOf(reply)
      return publishValue !== undefined ? { topic, envelope: reply } : { topic, frame: codec.encode(reply) }
    },
    publishReply(reply) {
      const qos = replyQos === 0 ? AT_MOST_ONCE : AT_LEAST_ONCE
      if (reply.frame === undefined && (reply.topic === undefined || publishValue === undefined)) return messenger.publish(reply.envelope)
      try {
        admit()
        if (reply.frame === undefined) {
          hand(reply.topic!, reply.envelope, qos)
          return SENT
        }
      } catch (err) {
        return Promise.reject(err)
      }
      return transport.publish(reply.topic, reply.frame, qos)
    },
    async subscribe(filter, handler, sopts) {
      if (closing) throw new OutpostError(ErrorCode.BRIDGE_CLOSED, `bridge of ${deviceId} is closed`)
      const onCleared = sopts?.onCleared
      return transport.subscribe(filter, (frame) => {
        if (onCleared !== undefined && frame.value === undefined && frame.payload.length === 0) {
          const device = gate.clearedDevice(frame)
          if (device !== undefined) return onCleared(device, frame.topic)
        }
        const msg = gate.messageOf(frame)
        return msg === undefined ? undefined : handler(msg)
      })
    },
    request(command) {
      let topic: string
      let frame: Uint8Array
      try {
        admit()
        topic = topics.topicOf(command)
        if (publishValue !== undefined) {
          // The fast path: the topic is all there is to keep for a re-send.
          const reply = pending.wait(command, clock.now(), topic)
          try {
            hand(topic, command, AT_LEAST_ONCE)
          } catch (err) {
            pending.fail(command.id, asOutpostError(err))
          }
          return reply
        }
        frame = codec.encode(command)
      } catch (err) {
        return Promise.reject(err)
      }
      const reply = pending.wait(command, clock.now(), { topic, frame } satisfies Unanswered)
      transport.publish(topic, frame, AT_LEAST_ONCE).catch((err: unknown) => pending.fail(command.id, asOutpostError(err)))
      return reply
    },
    declareServices(declared) {
      services = declared
      transport.setWill(presenceTopic, offline(), AT_LEAST_ONCE_RETAINED)
    },
    resendPending(target) {
      if (closing || transport.status.type !== 'connected') return
      const failed = (err: unknown, id: string): void => log.warn({ err: errorMessage(err), id }, 're-send failed')
      pending.forEach((command, memo) => {
        if (target !== undefined && command.target !== target) return
        if (typeof memo === 'string') {
          try {
            hand(memo, command, AT_LEAST_ONCE)
          } catch (err) {
            failed(err, command.id)
          }
          return
        }
        const u = memo as Unanswered
        transport.publish(u.topic, u.frame, AT_LEAST_ONCE).catch((err: unknown) => failed(err, command.id))
      })
    },
    onStatus: (l) => transport.onStatus(l),
    statusStream: (signal) => transport.statusStream(signal),
    stats() {
      const s = transport.stats()
      mergeDrops(s.dropped, gate.dropped())
      return s
    },
    async close(copts) {
      if (closing) return
      closing = true
      const drainMs = copts?.drainMs ?? 5_000
      await pending.drained(drainMs)
      if (transport.status.type === 'connected') {
        // A clean close sends no will [MQTT-3.14.4-3]: say goodbye ourselves.
        let timer: ReturnType<typeof setTimeout> | undefined
        const bye = transport.publish(presenceTopic, offline(), AT_LEAST_ONCE_RETAINED).catch(() => {})
        await Promise.race([bye, new Promise<void>((r) => (timer = setTimeout(r, drainMs)))])
        clearTimeout(timer)
      }
      await transport.close({ drainMs })
      pending.failAll(new OutpostError(ErrorCode.BRIDGE_CLOSED, `bridge of ${deviceId} closed`))
    },
  }
  return messenger
}

/** A failed publish as the caller of `request` hears it. */
function asOutpostError(err: unknown): OutpostError {
  return isOutpostError(err) ? err : new OutpostError(ErrorCode.BRIDGE_UNAVAILABLE, errorMessage(err), { cause: err, retryable: true })
}
