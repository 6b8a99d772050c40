import type { Msg, NatsConnection, Subscription as NatsSubscription } from '@nats-io/transport-node'
import { ErrorCode, errorMessage } from '../../errors.js'
import type { LogLimiter } from '../../log-limiter.js'
import { LeftUnacknowledged, type FrameHandler, type InboundFrame } from '../../ports/bridge.js'
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

/**
 * Stored retained frames read at once (each up to the server's max_payload, 1 MiB by default).
 * Each read is a JetStream API request with its own timeout (5 s): with 16 frames of 1 MiB at
 * once through a slow machine's loopback the last answers came too late and the whole restore
 * failed; 4 at once keep each request to a few MiB.
 */
const RETAINED_READS_AT_ONCE = 4

/**
 * The stream sequence a live copy of a retained publish carries, or 0. Any client can send any
 * header block: one nats.js refuses to parse (a space in a header name) throws when read, and a
 * value that is no positive integer means nothing here.
 */
function retainedSeqOf(msg: Msg): number {
  let value: string | undefined
  try {
    value = msg.headers?.get(RETAINED_SEQ)
  } catch {
    return 0
  }
  if (value === undefined || !/^[1-9][0-9]{0,15}$/.test(value)) return 0
  const seq = Number(value)
  return Number.isSafeInteger(seq) ? seq : 0
}

/**
 * Keeps a connection reading whatever a message does to the code it is handed to. nats.js hands
 * each inbound message to its subscription's callback from the loop that reads the socket, and an
 * exception there ends that loop for good: the connection goes deaf (no messages, no PONGs) until
 * two client PINGs went unanswered, while the bytes the server sends pile up unread. And nats.js
 * throws on input any client can send: the headers of a message whose header block has a line it
 * refuses (a space in a header name) throw when read, and its request muxer reads them for every
 * empty reply, so a forged empty reply to one of this bridge's requests (a will probe, a JetStream
 * API call) would stop it. So every message is handed over inside a try/catch: one that throws is
 * dropped and reported to `dropped`. False when this nats.js has no such hook (then nothing changed).
 */
export function guardReader(c: NatsConnection, dropped: (err: unknown) => void): boolean {
  const protocol = (c as unknown as { protocol?: { processMsg?: unknown } }).protocol
  const processMsg = protocol?.processMsg
  if (protocol === undefined || typeof processMsg !== 'function') return false
  protocol.processMsg = function guardedProcessMsg(this: unknown, ...args: unknown[]): unknown {
    try {
      return (processMsg as (...a: unknown[]) => unknown).apply(this, args)
    } catch (err) {
      dropped(err)
      return undefined
    }
  }
  return true
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
      // Left unacknowledged (a stopping runtime): NATS core sends nothing again; dropped quietly.
      (err: unknown) => void (err instanceof LeftUnacknowledged || trouble.error('subscriber-failed', { err: errorMessage(err) }, 'subscriber failed')),
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
  /** A subject no topic maps to (see `subjectToTopic`): another client published it; never handed over. */
  const noTopic = (subject: string): void => {
    stats.received++
    stats.drop(ErrorCode.INVALID_TOPIC_LEVEL)
    trouble.warn(`inbound-${ErrorCode.INVALID_TOPIC_LEVEL}`, { subject: subject.slice(0, 256) }, 'dropped inbound frame: its subject is not the subject of any topic')
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
          if (topic === undefined) return noTopic(msg.subject)
          stats.received++
          if (msg.data.length > maxPayloadBytes) return tooLarge(topic, msg.data.length)
          if (g.reading > 0) {
            const seq = retainedSeqOf(msg)
            if (seq > 0) g.liveSeq.set(topic, seq)
          }
          dispatch(g.locals.slice(), new NatsFrame(topic, msg.data, false))
        },
      }),
    )
  }

  /**
   * Hands the stored retained frames of a group's filter to `locals` (skipping any a live copy
   * already superseded). The store holds whatever any client put there, up to the server's
   * max_payload a frame: frames are read `RETAINED_READS_AT_ONCE` at a time and handed over before
   * the next ones are read, so what a read holds is bounded however many the store has.
   */
  const deliverRetained = async (store: NatsStore, g: Group, locals: LocalSub[]): Promise<void> => {
    g.reading++
    try {
      const subjects = (await Promise.all(g.subjects.map((s) => store.retainedSubjects(s)))).flat()
      for (let i = 0; i < subjects.length; i += RETAINED_READS_AT_ONCE) {
        const frames = await Promise.all(subjects.slice(i, i + RETAINED_READS_AT_ONCE).map((s) => store.lastRetained(s)))
        for (const f of frames) {
          if (f === undefined) continue
          const topic = subjectToTopic(f.subject, prefix)
          if (topic === undefined) {
            noTopic(f.subject)
            continue
          }
          if ((g.liveSeq.get(topic) ?? 0) >= f.seq) continue
          stats.received++
          if (f.payload.length > maxPayloadBytes) {
            tooLarge(topic, f.payload.length)
            continue
          }
          dispatch(locals.filter((l) => g.locals.includes(l)), new NatsFrame(topic, f.payload, true))
        }
      }
    } finally {
      if (--g.reading === 0) g.liveSeq.clear()
    }
  }

  return { inFlight, open, deliverRetained }
}
