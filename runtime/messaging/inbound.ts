import type { Logger } from 'pino'
import { createLogLimiter } from '../log-limiter.js'
import { systemClock, type Clock } from '../ports/clock.js'
import type { InboundFrame } from '../ports/bridge.js'
import type { EnvelopeCodec } from '../wire/codec.js'
import type { Envelope } from '../wire/envelope.js'
import { isTopicSegment } from '../wire/topics.js'

/** One envelope handed to a subscriber. */
export interface InboundMessage {
  topic: string
  envelope: Envelope
  /** Delivered from the broker's retained store rather than published just now. */
  retained: boolean
  /** The broker says it may have delivered this message before (MQTT DUP flag). */
  redelivered: boolean
}

/** What the messaging layer makes of inbound frames: envelopes, checked once per delivery, and counted drops. */
export interface InboundGate {
  /**
   * The envelope a frame carries, or undefined when it is dropped (counted by code and logged at a
   * bounded rate). Every subscriber of one delivery gets the same frame object from the bridge, so
   * a frame is decoded and checked once however many subscriptions it matches, and a drop is
   * counted once.
   */
  envelopeOf(frame: InboundFrame): Envelope | undefined
  /** The message a subscriber gets for a frame (one object per delivery), or undefined when it is dropped. */
  messageOf(frame: InboundFrame): InboundMessage | undefined
  /**
   * A zero-byte frame: how MQTT clears a retained message. The device is the sender level of its
   * topic (`<prefix>/<device>/…`); undefined when the topic has none, and then the frame is an
   * empty, malformed one. Marks the delivery as taken.
   */
  clearedDevice(frame: InboundFrame): string | undefined
  /** Counts a drop the messaging layer decided on elsewhere (LATE_REPLY). */
  drop(code: string): void
  /** Drops by code. */
  dropped(): Record<string, number>
}

/** Creates the gate of one messenger: `prefix` is the first topic level, whose next level names the sender. */
export function createInboundGate(codec: EnvelopeCodec, prefix: string, log: Logger, clock: Clock = systemClock): InboundGate {
  const senderAt = prefix.length + 1
  const dropped: Record<string, number> = {}
  const trouble = createLogLimiter(log, { clock })
  const drop = (code: string): void => {
    dropped[code] = (dropped[code] ?? 0) + 1
  }
  // The last delivery seen and what became of it.
  let lastFrame: InboundFrame | undefined
  let lastEnvelope: Envelope | undefined
  let lastMessage: InboundMessage | undefined

  const accept = (frame: InboundFrame): Envelope | undefined => {
    const topic = frame.topic
    let env = frame.value as Envelope | undefined
    if (env === undefined) {
      const decoded = codec.decode(frame.payload)
      if (!decoded.ok) {
        const code = decoded.error.code
        drop(code)
        // One line per reason a minute under a flood; the counts are in stats().dropped.
        trouble.warn(`inbound-${code}`, { topic: topic.slice(0, 256), code, bytes: frame.payload.length }, `dropped inbound frame: ${decoded.error.message}`)
        return undefined
      }
      env = decoded.envelope
    }
    // The level after the prefix names the sender, and a broker ACL can make it authentic: a
    // frame that claims another sender (a reply or a presence in someone else's name) is dropped.
    if (!(topic.startsWith(env.src, senderAt) && topic.charCodeAt(senderAt + env.src.length) === 0x2f)) {
      drop('SENDER_MISMATCH')
      trouble.warn('inbound-SENDER_MISMATCH', { topic: topic.slice(0, 256), src: env.src }, 'dropped inbound frame: its src is not the sender its topic names')
      return undefined
    }
    return env
  }
  const envelopeOf = (frame: InboundFrame): Envelope | undefined => {
    if (frame === lastFrame) return lastEnvelope
    lastFrame = frame
    lastMessage = undefined
    return (lastEnvelope = accept(frame))
  }

  return {
    envelopeOf,
    messageOf(frame) {
      const envelope = envelopeOf(frame)
      if (envelope === undefined) return undefined
      return (lastMessage ??= { topic: frame.topic, envelope, retained: frame.retained, redelivered: frame.redelivered })
    },
    clearedDevice(frame) {
      const topic = frame.topic
      if (!topic.startsWith(`${prefix}/`)) return undefined
      const end = topic.indexOf('/', senderAt)
      const device = topic.slice(senderAt, end < 0 ? undefined : end)
      if (!isTopicSegment(device)) return undefined
      lastFrame = frame
      lastEnvelope = undefined
      lastMessage = undefined
      return device
    },
    drop,
    dropped: () => ({ ...dropped }),
  }
}

/** Adds the drops of the messaging layer to a bridge's counters. */
export function mergeDrops(into: Record<string, number>, more: Record<string, number>): Record<string, number> {
  for (const code in more) into[code] = (into[code] ?? 0) + more[code]!
  return into
}
