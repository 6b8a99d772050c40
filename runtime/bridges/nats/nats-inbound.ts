import type { NatsConnection, Subscription as NatsSubscription } from '@nats-io/transport-node'
import { ErrorCode, errorMessage } from '../../errors.js'
import type { LogLimiter } from '../../log-limiter.js'
import type { FrameHandler, InboundFrame } from '../../ports/bridge.js'
import type { createBridgeStats } from '../bridge-kit.js'
import type { NatsStore } from './nats-store.js'
import { isSystemSubject, subjectToTopic } from './nats-subjects.js'

/** Header of the live copy of a retained publish: the stream sequence it was stored at. */
export const RETAINED_SEQ = 'Outpost-Retained-Seq'

export class NatsFrame implements InboundFrame {
  readonly redelivered = false
  constructor(
    readonly topic: string,
    readonly payload: Uint8Array,
    readonly retained: boolean,
  ) {}
}

export interface LocalSub {
  filter: string
  handler: FrameHandler
}

/** The subscribers of one filter and the NATS subscriptions (one or two subjects) that feed them. */
export interface Group {
  filter: string
  subjects: string[]
  subs: NatsSubscription[]
  locals: LocalSub[]
  /** Retained reads under way; while any is, live copies of retained publishes note their sequence. */
  reading: number
  liveSeq: Map<string, number>
}


/** Inbound side of a NATS bridge: live frames of each filter's subscriptions, stored retained frames, handlers in flight. */
export interface Inbound {
  /** Handlers whose promises have not settled yet (close waits for them). */
  readonly inFlight: ReadonlySet<Promise<void>>
  /** Subscribes a group's subjects on a connection (nats.js renews them on every reconnect). */
  open(c: NatsConnection, g: Group): void
  /** Hands the stored retained frames of a group's filter to `locals`, skipping any a live copy already superseded. */
  deliverRetained(store: NatsStore, g: Group, locals: LocalSub[]): Promise<void>
}

/** What the inbound side needs of its bridge. */
export interface InboundOptions {
  prefix: readonly string[]
  maxPayloadBytes: number
  stats: ReturnType<typeof createBridgeStats>
  trouble: LogLimiter
}

/** A group with no subscribers yet. */
export const newGroup = (filter: string, subjects: string[]): Group => ({ filter, subjects, subs: [], locals: [], reading: 0, liveSeq: new Map() })

/**
 * Creates the inbound side. A NATS subscription feeds only the handlers of its own filter, so a
 * frame matching two filters reaches each handler once (as from aedes or Mosquitto). No
 * acknowledgement goes back: NATS core has none; a handler's promise only delays `close`.
 */
export function createInbound(o: InboundOptions): Inbound {
  const { prefix, maxPayloadBytes, stats, trouble } = o
  const inFlight = new Set<Promise<void>>()
  const track = (p: Promise<void>): void => {
    const q = p.then(
      () => {},
      (err: unknown) => trouble.error('subscriber-failed', { err: errorMessage(err) }, 'subscriber failed'),
    )
    inFlight.add(q)
    void q.finally(() => inFlight.delete(q))
  }
  const dispatch = (locals: readonly LocalSub[], frame: NatsFrame): void => {
    for (const l of locals) {
      try {
        const r = l.handler(frame)
        if (r !== undefined) track(r)
      } catch (err) {
        trouble.error('subscriber-threw', { err: errorMessage(err), topic: frame.topic.slice(0, 256) }, 'subscriber threw; frame dropped')
      }
    }
  }
  const tooLarge = (topic: string, bytes: number): void => {
    stats.drop(ErrorCode.FRAME_TOO_LARGE)
    trouble.warn(`inbound-${ErrorCode.FRAME_TOO_LARGE}`, { topic: topic.slice(0, 256), bytes, limit: maxPayloadBytes }, 'dropped inbound frame larger than the frame limit')
  }

  const open = (c: NatsConnection, g: Group): void => {
    const wildFirst = g.filter.startsWith('+') || g.filter.startsWith('#')
    g.subs = g.subjects.map((subject) =>
      c.subscribe(subject, {
        callback: (err, msg) => {
          if (err !== null) {
            trouble.error('subscription-failed', { err: errorMessage(err), filter: g.filter }, 'NATS ended a subscription')
            return
          }
          if (wildFirst && isSystemSubject(msg.subject, prefix)) return
          const topic = subjectToTopic(msg.subject, prefix)
          if (topic === undefined) return
          stats.received++
          if (msg.data.length > maxPayloadBytes) return tooLarge(topic, msg.data.length)
          if (g.reading > 0 && msg.headers !== undefined) {
            const seq = Number(msg.headers.get(RETAINED_SEQ))
            if (seq > 0) g.liveSeq.set(topic, seq)
          }
          dispatch(g.locals.slice(), new NatsFrame(topic, msg.data, false))
        },
      }),
    )
  }

  /** Hands the stored retained frames of a group's filter to `locals` (skipping any a live copy already superseded). */
  const deliverRetained = async (store: NatsStore, g: Group, locals: LocalSub[]): Promise<void> => {
    g.reading++
    try {
      const frames = (await Promise.all(g.subjects.map((s) => store.readRetained(s)))).flat()
      for (const f of frames) {
        const topic = subjectToTopic(f.subject, prefix)
        if (topic === undefined || (g.liveSeq.get(topic) ?? 0) >= f.seq) continue
        stats.received++
        if (f.payload.length > maxPayloadBytes) {
          tooLarge(topic, f.payload.length)
          continue
        }
        dispatch(locals.filter((l) => g.locals.includes(l)), new NatsFrame(topic, f.payload, true))
      }
    } finally {
      if (--g.reading === 0) g.liveSeq.clear()
    }
  }

  return { inFlight, open, deliverRetained }
}
