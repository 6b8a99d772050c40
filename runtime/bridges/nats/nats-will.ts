import { Empty, NoRespondersError, type NatsConnection, type Subscription as NatsSubscription } from '@nats-io/transport-node'
import type { Logger } from 'pino'
import { errorMessage } from '../../errors.js'
import type { NatsStore, WillRecord } from './nats-store.js'

/** The will a bridge was given with `setWill`. */
export interface WillFrame {
  topic: string
  payload: Uint8Array
  qos: 0 | 1
  retain: boolean
}

/**
 * Last wills over NATS, which has none. The server still knows the one thing a will needs,
 * whether a connection is alive: each bridge answers requests on a liveness subject of its own
 * (`<root>.a.<device>.<nonce>`), and a request to a subject nobody listens on fails at once with
 * "no responders". So:
 *
 * - A bridge with a will stores it, with its nonce, as its device's will record, at every connect.
 *   A clean close clears the record first, so no will goes out [as MQTT's DISCONNECT].
 * - A bridge that lost its connection publishes its own will when it is back, before it says
 *   `connected` (the other devices hear the loss late but in order: will, then the new birth).
 * - A bridge that starts finds its device's record of an earlier process: if that nonce has no
 *   responders the process died (kill -9, power cut) and its will goes out.
 * - Watchers (every bridge unless `watchWills: false`) probe every will record each `checkMs`;
 *   a record whose liveness subject has no responders twice in a row has its will published.
 *
 * Whoever publishes a will first claims the record (replaced by an empty message only if it is
 * still at the sequence read: JetStream's expected-last-subject-sequence), so each lost
 * connection's will goes out once. Limits: a device that never comes back is announced by a
 * watcher, so within about two `checkMs` only while some watcher runs; a watcher that claims a
 * will just as the device comes back may publish the will after the device's new birth.
 */
export interface WillKeeper {
  /** The will to store at the next connect (and now, if connected). */
  set(will: WillFrame | undefined, connected: boolean): Promise<void>
  /** After every (re)connect: the will of a lost connection of this device goes out, then this connection's record is stored. */
  connected(lostBefore: boolean): Promise<void>
  /** Clean close: the record goes, so no will is published for this connection. */
  clear(): Promise<void>
  stop(): void
}

/** What the will keeper needs of its bridge. */
export interface WillKeeperOptions {
  nc: NatsConnection
  store: NatsStore
  /** The device id as a subject token. */
  device: string
  nonce: string
  publishWill(will: WillRecord): Promise<void>
  /** Watcher period, ms; 0: no watching. */
  checkMs: number
  isConnected(): boolean
  log: Logger
}

const toBase64 = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64')

/** True when the error (or one it wraps) says nobody subscribes to the subject. */
function isNoResponders(err: unknown): boolean {
  for (let e: unknown = err; e instanceof Error; e = e.cause) if (e instanceof NoRespondersError || e.name.startsWith('NoResponders')) return true
  return false
}

/** Creates the will keeper of one bridge (see `WillKeeper`). */
export function createWillKeeper(o: WillKeeperOptions): WillKeeper {
  let will: WillFrame | undefined
  let mySeq: number | undefined
  let stopped = false
  const alive: NatsSubscription = o.nc.subscribe(o.store.aliveSubject(o.device, o.nonce), {
    callback: (_err, msg) => {
      if (msg.reply) msg.respond(Empty)
    },
  })

  /** Whether a nonce's connection answers (a timeout counts as alive: no proof of death). */
  const answers = async (device: string, nonce: string): Promise<boolean> => {
    try {
      await o.nc.request(o.store.aliveSubject(device, nonce), Empty, { timeout: 2_000 })
      return true
    } catch (err) {
      return !isNoResponders(err)
    }
  }

  const record = (): WillRecord | undefined =>
    will === undefined ? undefined : { topic: will.topic, payload: toBase64(will.payload), qos: will.qos, retain: will.retain, nonce: o.nonce }

  const store = async (): Promise<void> => {
    const r = record()
    if (r === undefined) {
      if (mySeq !== undefined) await o.store.claimWill(o.device, mySeq)
      mySeq = undefined
      return
    }
    mySeq = await o.store.putWill(o.device, r)
  }

  const claimAndPublish = async (device: string, seq: number, r: WillRecord): Promise<void> => {
    if (!(await o.store.claimWill(device, seq))) return
    o.log.debug({ device, topic: r.topic }, 'publishing the last will of a lost connection')
    await o.publishWill(r)
  }

  // Records seen without responders once, by `device:seq`: a second look confirms.
  let suspects = new Set<string>()
  let busy = false
  const tick = async (): Promise<void> => {
    if (busy || stopped || !o.isConnected()) return
    busy = true
    try {
      const seen = new Set<string>()
      for (const w of await o.store.listWills()) {
        if (w.device === o.device && w.record.nonce === o.nonce) continue
        if (await answers(w.device, w.record.nonce)) continue
        const key = `${w.device}:${w.seq}`
        if (suspects.has(key)) await claimAndPublish(w.device, w.seq, w.record)
        else seen.add(key)
      }
      suspects = seen
    } catch (err) {
      o.log.debug({ err: errorMessage(err) }, 'will watch failed; trying again next period')
    } finally {
      busy = false
    }
  }
  const timer = o.checkMs > 0 ? setInterval(() => void tick(), o.checkMs) : undefined
  timer?.unref()

  return {
    async set(w, connected) {
      will = w
      if (connected) await store()
    },
    async connected(lostBefore) {
      // Make sure the liveness subscription is on the server before a record names it.
      await o.nc.flush()
      const old = await o.store.getWill(o.device)
      if (old !== undefined) {
        const mine = old.record.nonce === o.nonce
        // Our own record: this process lost that connection. Another process's: dead unless it answers.
        try {
          if ((mine && lostBefore) || (!mine && !(await answers(o.device, old.record.nonce)))) await claimAndPublish(o.device, old.seq, old.record)
        } catch (err) {
          // Whatever the old record held (any client may have written it), this connection's record is stored.
          o.log.warn({ err: errorMessage(err), topic: old.record.topic.slice(0, 256) }, 'publishing the will of an earlier connection failed')
        }
      }
      await store()
    },
    async clear() {
      if (mySeq !== undefined) await o.store.claimWill(o.device, mySeq)
      mySeq = undefined
    },
    stop() {
      stopped = true
      if (timer !== undefined) clearInterval(timer)
      alive.unsubscribe()
    },
  }
}
