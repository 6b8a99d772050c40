import type { NatsConnection } from '@nats-io/transport-node'
import { DiscardPolicy, jetstream, jetstreamManager, JetStreamApiError, RetentionPolicy, StorageType, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream'
import { ErrorCode, OutpostError, errorMessage } from '../../errors.js'

/**
 * What NATS core lacks and MQTT brokers keep: retained messages and last wills. Both live in one
 * JetStream stream that keeps the last message of each subject (`max_msgs_per_subject: 1`, file
 * storage, so they survive a server restart as a broker's retained store does):
 *
 * - `<root>.r.<frame subject>`: the retained message of a topic. A clear is stored as an empty
 *   message (readers skip it), so it too has a sequence a live copy can carry (see the bridge).
 * - `<root>.w.<device>`: the device's will record (JSON: the will frame and the nonce of the
 *   connection it belongs to). Replaced at every connect, cleared (empty) on a clean close, and
 *   "claimed" (replaced by an empty message, only if still at the sequence read) by whoever
 *   publishes the will, so a will goes out once however many bridges notice the loss.
 */
export interface NatsStore {
  /** Creates the stream unless it is there (once per connection; again after a failure). */
  ensure(): Promise<void>
  /** Stores a topic's retained message (an empty one clears it) and returns its stream sequence. */
  putRetained(subject: string, payload: Uint8Array): Promise<number>
  /** The stored subjects (frame subjects) a frame subject filter covers. */
  retainedSubjects(filter: string): Promise<string[]>
  /** The retained message of one frame subject, unless it has none or was cleared. */
  lastRetained(subject: string): Promise<StoredFrame | undefined>
  /** Stores the device's will record; returns its sequence. */
  putWill(device: string, record: WillRecord): Promise<number>
  /** The device's will record, if it has one. */
  getWill(device: string): Promise<{ seq: number; record: WillRecord } | undefined>
  /** Every will record (devices by subject token). */
  listWills(): Promise<{ device: string; seq: number; record: WillRecord }[]>
  /** Replaces the record by an empty one if it is still at `seq`; true when this call did it. */
  claimWill(device: string, seq: number): Promise<boolean>
  /** The subject a device's liveness probe goes to (its connection answers while it lives). */
  aliveSubject(device: string, nonce: string): string
  /** Forgets the JetStream handles (a new connection makes new ones). */
  reset(): void
}

/** A stored retained frame. */
export interface StoredFrame {
  subject: string
  payload: Uint8Array
  seq: number
}

/** A last will as the store keeps it. */
export interface WillRecord {
  topic: string
  /** base64 */
  payload: string
  qos: 0 | 1
  retain: boolean
  /** The connection it belongs to: its liveness subject's last token. */
  nonce: string
}

const te = new TextEncoder()
const td = new TextDecoder()

const unavailable = (what: string, err: unknown): OutpostError =>
  new OutpostError(ErrorCode.BRIDGE_UNAVAILABLE, `NATS ${what} failed: ${errorMessage(err)}`, { cause: err, retryable: true })

/** Creates the store of one bridge over connection `nc` (the same for its whole life). */
export function createNatsStore(nc: NatsConnection, streamName: string, root: string): NatsStore {
  let ready: Promise<void> | undefined
  let jsm: JetStreamManager | undefined
  let js: JetStreamClient | undefined
  const retainedRoot = `${root}.r.`
  const willRoot = `${root}.w.`

  const manager = async (): Promise<JetStreamManager> => (jsm ??= await jetstreamManager(nc))
  const client = (): JetStreamClient => (js ??= jetstream(nc))

  const ensure = (): Promise<void> => {
    ready ??= (async () => {
      const m = await manager()
      try {
        await m.streams.info(streamName)
        return
      } catch (err) {
        if (!(err instanceof JetStreamApiError) || err.code !== 10059) throw err // 10059: stream not found
      }
      try {
        await m.streams.add({
          name: streamName,
          subjects: [`${root}.r.>`, `${root}.w.*`],
          retention: RetentionPolicy.Limits,
          storage: StorageType.File,
          discard: DiscardPolicy.Old,
          max_msgs_per_subject: 1,
        })
      } catch (err) {
        // Another bridge made it meanwhile (10058: name in use): theirs serves as well.
        if (!(err instanceof JetStreamApiError) || err.code !== 10058) throw err
      }
    })().catch((err: unknown) => {
      ready = undefined
      throw unavailable(`JetStream stream ${streamName}`, err)
    })
    return ready
  }

  const lastOf = async (subject: string): Promise<{ seq: number; data: Uint8Array } | undefined> => {
    const m = await manager()
    const sm = await m.streams.getMessage(streamName, { last_by_subj: subject })
    return sm === null ? undefined : { seq: sm.seq, data: sm.data }
  }

  // Any client with publish rights on the stream's subjects can write a record: one of another
  // shape is no record (ignored, as a cleared one is).
  const parseWill = (data: Uint8Array): WillRecord | undefined => {
    if (data.length === 0) return undefined
    let r: Partial<Record<keyof WillRecord, unknown>> | null
    try {
      r = JSON.parse(td.decode(data)) as Partial<Record<keyof WillRecord, unknown>> | null
    } catch {
      return undefined
    }
    if (typeof r !== 'object' || r === null) return undefined
    const { topic, payload, qos, retain, nonce } = r
    if (typeof topic !== 'string' || typeof payload !== 'string' || (qos !== 0 && qos !== 1) || typeof retain !== 'boolean' || typeof nonce !== 'string') return undefined
    return { topic, payload, qos, retain, nonce }
  }

  return {
    ensure,
    async putRetained(subject, payload) {
      await ensure()
      try {
        return (await client().publish(retainedRoot + subject, payload)).seq
      } catch (err) {
        throw unavailable('retained store', err)
      }
    },
    async retainedSubjects(filter) {
      await ensure()
      try {
        const m = await manager()
        const info = await m.streams.info(streamName, { subjects_filter: retainedRoot + filter })
        return Object.keys(info.state.subjects ?? {}).map((s) => s.slice(retainedRoot.length))
      } catch (err) {
        throw unavailable('retained read', err)
      }
    },
    async lastRetained(subject) {
      try {
        const msg = await lastOf(retainedRoot + subject)
        return msg === undefined || msg.data.length === 0 ? undefined : { subject, payload: msg.data, seq: msg.seq }
      } catch (err) {
        throw unavailable('retained read', err)
      }
    },
    async putWill(device, record) {
      await ensure()
      try {
        return (await client().publish(willRoot + device, te.encode(JSON.stringify(record)))).seq
      } catch (err) {
        throw unavailable('will store', err)
      }
    },
    async getWill(device) {
      await ensure()
      const msg = await lastOf(willRoot + device)
      const record = msg === undefined ? undefined : parseWill(msg.data)
      return record === undefined ? undefined : { seq: msg!.seq, record }
    },
    async listWills() {
      await ensure()
      const m = await manager()
      const info = await m.streams.info(streamName, { subjects_filter: `${willRoot}*` })
      const out: { device: string; seq: number; record: WillRecord }[] = []
      for (const s of Object.keys(info.state.subjects ?? {})) {
        const msg = await lastOf(s)
        const record = msg === undefined ? undefined : parseWill(msg.data)
        if (record !== undefined) out.push({ device: s.slice(willRoot.length), seq: msg!.seq, record })
      }
      return out
    },
    async claimWill(device, seq) {
      await ensure()
      try {
        await client().publish(willRoot + device, new Uint8Array(0), { expect: { lastSubjectSequence: seq } })
        return true
      } catch (err) {
        // 10071: wrong last sequence: someone else claimed it, or the device stored a newer record.
        if (err instanceof JetStreamApiError && err.code === 10071) return false
        throw unavailable('will claim', err)
      }
    },
    aliveSubject: (device, nonce) => `${root}.a.${device}.${nonce}`,
    reset() {
      ready = undefined
      jsm = undefined
      js = undefined
    },
  }
}
