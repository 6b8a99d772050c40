import type { Aedes, AedesOptions, AedesPublishPacket } from 'aedes'
import { DEFAULT_TOPIC_PREFIX } from '../../runtime/wire/topics.js'

/** What a message is, from its topic (runtime/wire/README.md): a command, a reply, an event, a presence, or anything else. */
export type MessageKind = 'cmd' | 'rep' | 'evt' | 'status' | 'other'
export const MESSAGE_KINDS: readonly MessageKind[] = ['cmd', 'rep', 'evt', 'status', 'other']

/** Messages and payload bytes of one kind. */
export interface TrafficCount {
  messages: number
  bytes: number
}

/** Messages through the broker since the gateway started, by kind: published to it (in) and delivered by it (out). */
export interface TrafficSnapshot {
  in: Record<MessageKind, TrafficCount>
  out: Record<MessageKind, TrafficCount>
}

/**
 * Counts the messages through the gateway's brokers. The counts outlive each broker: a drill
 * starts a new aedes, which `attach` follows too.
 */
export interface Traffic {
  /** Counts what is published to this broker (its 'publish' events), the broker's own `$SYS` messages aside. */
  attach(aedes: Aedes): void
  /**
   * The aedes `authorizeForward` hook: counts each delivery to a subscriber and lets it through.
   * A QoS 0 delivery the broker then drops for a slow subscriber is counted all the same (the
   * broker counts those drops itself).
   */
  readonly forward: NonNullable<AedesOptions['authorizeForward']>
  snapshot(): TrafficSnapshot
}

const zero = (): Record<MessageKind, TrafficCount> => ({
  cmd: { messages: 0, bytes: 0 },
  rep: { messages: 0, bytes: 0 },
  evt: { messages: 0, bytes: 0 },
  status: { messages: 0, bytes: 0 },
  other: { messages: 0, bytes: 0 },
})

/** The kind of a topic of the wire layout under `prefix`: the level after the device's names it. */
export function kindOfTopic(topic: string, prefix: string = DEFAULT_TOPIC_PREFIX): MessageKind {
  if (!topic.startsWith(prefix) || topic.charCodeAt(prefix.length) !== 0x2f) return 'other'
  const slash = topic.indexOf('/', prefix.length + 1)
  if (slash < 0) return 'other'
  const rest = topic.slice(slash + 1)
  if (rest === 'status') return 'status'
  if (rest.startsWith('cmd/')) return 'cmd'
  if (rest.startsWith('rep/')) return 'rep'
  if (rest.startsWith('evt/')) return 'evt'
  return 'other'
}

const payloadBytes = (p: AedesPublishPacket): number => (typeof p.payload === 'string' ? Buffer.byteLength(p.payload) : (p.payload?.length ?? 0))

/** Creates the counters; give `forward` to every broker as its authorizeForward and `attach` each one started. */
export function createTraffic(opts: { prefix?: string } = {}): Traffic {
  const prefix = opts.prefix ?? DEFAULT_TOPIC_PREFIX
  const counts: TrafficSnapshot = { in: zero(), out: zero() }
  const count = (side: Record<MessageKind, TrafficCount>, packet: AedesPublishPacket): void => {
    if (packet.topic.startsWith('$SYS/')) return
    const c = side[kindOfTopic(packet.topic, prefix)]
    c.messages++
    c.bytes += payloadBytes(packet)
  }
  return {
    attach(aedes) {
      aedes.on('publish', (packet) => count(counts.in, packet))
    },
    forward(_client, packet) {
      count(counts.out, packet)
      return packet
    },
    snapshot: () => structuredClone(counts),
  }
}
