import { Readable } from 'node:stream'
import { ErrorCode, OutpostError } from '../../runtime/errors.js'
import { openDeviceDatabase, type DeviceDatabase } from '../../runtime/stores/sqlite/index.js'
import { BROKER_MIGRATIONS, prepareBrokerStatements } from './broker-schema.js'
import { createOutgoingQueues, type OutgoingQueues, type SessionQueueStats } from './outgoing-queues.js'
import { DEFAULT_MAX_QUEUED_MESSAGES, DEFAULT_MAX_SESSION_BYTES, DEFAULT_MAX_SESSIONS_BYTES, type SqlitePersistenceOptions } from './persistence-options.js'
import { asPacket, decodePacket, decodePlain, encodePacket as encode, type StoredPacket } from './stored-packet.js'
import { filterMatcher, SubscriptionIndex, type SubRecord, type TrieSub } from './subscription-index.js'
import { createTurnWrites, type TurnWrites } from './turn-writes.js'

export { BROKER_MIGRATIONS } from './broker-schema.js'
export type { SessionQueueStats } from './outgoing-queues.js'
export type { StoredPacket } from './stored-packet.js'
export { DEFAULT_MAX_QUEUED_MESSAGES, DEFAULT_MAX_SESSION_BYTES, type SqlitePersistenceOptions } from './persistence-options.js'

// The broker's state in its own SQLite file, `<dataDir>/broker.db`, for aedes 1.x (which calls
// the promise API of aedes-persistence; see node_modules/aedes-persistence/asyncPersistence.js,
// the in-memory reference this follows method for method).
//
// The file is the truth; everything in it is also held in memory, loaded once when the
// persistence is created, so that lookups (retained messages by pattern, subscriptions by
// topic, a client's queue) never read the disk. Every change is applied in memory at once and
// written to the file in one transaction per turn of the event loop: each QoS 1 delivery costs
// a store and a clear, and hundreds of them commit together. A promise resolves only after its
// change is committed.
//
// Durability: WAL with synchronous NORMAL. A commit is in the log file when its promise
// resolves, so a process killed (kill -9, a crash) loses nothing that was acknowledged; a
// power cut or a kernel crash may lose the last commits before the log was synced to the disk
// (the checkpoint syncs it), never the file's consistency.
//
// Damage: broker.db is opened like a device database (openDeviceDatabase): a file SQLite
// reports as damaged is moved aside to `broker.db.corrupt-<time>` (never deleted), the broker
// starts with an empty state, and a warning says where the old file went.

// The rooms: packets as rows (stored-packet.ts), the schema and its statements
// (broker-schema.ts), the commit per turn and its failures (turn-writes.ts), subscriptions in
// memory (subscription-index.ts), the outgoing queues and their budgets (outgoing-queues.ts);
// this file is what aedes calls.

interface Client {
  id: string
}

/** The aedes instance the persistence serves (only its id is used: wills carry it). */
interface BrokerLike {
  id: string
}

/**
 * The aedes persistence on SQLite (see the top of this file). One object serves every broker
 * started on it in the process (a drill stops the broker and starts another): `setup` only
 * takes the new broker, and aedes 1.x never calls `destroy` when it closes; `destroy` (or
 * `close`) writes what is pending and closes the file, once, when the gateway closes.
 */
export class SqlitePersistence {
  readonly #database: DeviceDatabase
  #broker: BrokerLike | undefined
  // The state in memory (the file's copy), keyed as the reference keeps it.
  readonly #retained = new Map<string, StoredPacket>()
  readonly #subscriptions = new SubscriptionIndex()
  /**
   * The filter list last stored, and for whom, while no other change to subscriptions followed.
   * aedes calls addSubscriptions once per filter of a SUBSCRIBE, in one go, each time with all of
   * the packet's filters: n² rows for a packet of n, which a device with a persistent session
   * turned into minutes of a blocked event loop and gigabytes of memory.
   */
  #lastList: { subs: object; clientId: string } | undefined
  readonly #outgoing: OutgoingQueues
  readonly #incoming = new Map<string, Map<number, StoredPacket>>()
  /** A client's QoS 2 packets waiting for their PUBREL, by packet id. */
  #incomingOf(clientId: string): Map<number, StoredPacket> {
    let held = this.#incoming.get(clientId)
    if (held === undefined) this.#incoming.set(clientId, (held = new Map()))
    return held
  }
  readonly #maxIncoming: number
  readonly #wills = new Map<string, StoredPacket>()
  readonly #writes: TurnWrites
  #closed = false
  readonly #stmt

  constructor(opts: SqlitePersistenceOptions) {
    const log = opts.log
    this.#maxIncoming = opts.maxIncomingPerClient ?? 64
    const logIntervalMs = opts.logIntervalMs ?? 60_000
    this.#outgoing = createOutgoingQueues({ maxQueued: opts.maxQueuedMessages ?? DEFAULT_MAX_QUEUED_MESSAGES, maxQueuedBytes: opts.maxQueuedBytes ?? DEFAULT_MAX_SESSION_BYTES, maxTotalBytes: opts.maxTotalQueuedBytes ?? DEFAULT_MAX_SESSIONS_BYTES, logIntervalMs, log })
    // Synchronous NORMAL in WAL: a commit survives the process being killed (kill -9); a power
    // cut may take the last ones (see the top of this file and docs/gateway.md).
    // A short busy wait: better-sqlite3 waits synchronously, and another process holding broker.db
    // (someone's sqlite3 shell) froze MQTT and HTTP for 5 s per commit. A commit that gives up
    // fails its writes: no PUBACK, the clients send again.
    this.#database = openDeviceDatabase({ path: opts.path, migrations: BROKER_MIGRATIONS, synchronous: 'NORMAL', onCorrupt: 'fresh', busyTimeoutMs: 200 })
    if (this.#database.quarantinedTo !== undefined) {
      log?.warn({ path: opts.path, movedTo: this.#database.quarantinedTo, reason: this.#database.quarantineReason }, 'broker database was damaged: moved aside, the broker starts with no sessions, retained messages or queues')
    }
    this.#writes = createTurnWrites(this.#database, { log, logIntervalMs })
    const db = this.#database.db
    this.#stmt = prepareBrokerStatements(db)
    this.#load()
  }

  /** Reads the file into memory (once, when the persistence is created). */
  #load(): void {
    const db = this.#database.db
    type Row = { meta: string; payload: Buffer }
    for (const r of db.prepare('SELECT topic, meta, payload FROM retained').all() as (Row & { topic: string })[]) {
      this.#retained.set(r.topic, decodePlain(r.meta, r.payload))
    }
    for (const r of db.prepare('SELECT client_id, topic, record FROM subscriptions').all() as { client_id: string; topic: string; record: string }[]) {
      this.#subscriptions.add(r.client_id, r.topic, JSON.parse(r.record) as SubRecord)
    }
    for (const r of db.prepare('SELECT seq, client_id, meta, payload FROM outgoing ORDER BY seq').all() as (Row & { seq: number; client_id: string })[]) {
      this.#outgoing.restore(r.client_id, r.seq, decodePacket(r.meta, r.payload))
    }
    for (const r of db.prepare('SELECT client_id, message_id, meta, payload FROM incoming').all() as (Row & { client_id: string; message_id: number })[]) {
      this.#incomingOf(r.client_id).set(r.message_id, decodePacket(r.meta, r.payload))
    }
    for (const r of db.prepare('SELECT client_id, meta, payload FROM wills').all() as (Row & { client_id: string })[]) {
      this.#wills.set(r.client_id, decodePlain(r.meta, r.payload))
    }
  }

  #write(fn: () => void): Promise<void> {
    return this.#writes.write(fn)
  }

  /** Whether broker.db takes commits now, for readiness (after a failed commit, not until one goes through). */
  writable(): boolean {
    return !this.#closed && this.#writes.writable()
  }

  /** The broker (aedes calls it from `listen`, each time a broker starts on this persistence). */
  get broker(): BrokerLike | undefined {
    return this.#broker
  }

  async setup(broker: BrokerLike): Promise<void> {
    this.#broker = broker
  }

  // Retained messages.

  async storeRetained(pkt: StoredPacket): Promise<void> {
    const packet = { ...pkt }
    if (packet.payload.length === 0) {
      this.#retained.delete(packet.topic)
      return this.#write(() => this.#stmt.delRetained.run(packet.topic))
    }
    this.#retained.set(packet.topic, packet)
    const [meta, payload] = encode(packet)
    return this.#write(() => this.#stmt.putRetained.run(packet.topic, meta, payload))
  }

  createRetainedStream(pattern: string): Readable {
    return this.createRetainedStreamCombi([pattern])
  }

  createRetainedStreamCombi(patterns: string[]): Readable {
    return Readable.from(this.#retainedMatching(patterns))
  }

  *#retainedMatching(patterns: string[]): Generator<StoredPacket> {
    for (const pattern of patterns) {
      const matches = filterMatcher(pattern)
      for (const [topic, packet] of this.#retained) if (matches(topic)) yield packet
    }
  }

  // Subscriptions.

  async addSubscriptions(client: Client, subs: (SubRecord & { topic: string })[]): Promise<void> {
    // The same packet again, nothing changed since: it is stored, or in the transaction to come (waited for).
    if (this.#lastList?.subs === subs && this.#lastList.clientId === client.id) return this.#writes.scheduled ? this.#write(() => {}) : undefined
    this.#lastList = { subs, clientId: client.id }
    const rows: [string, string][] = []
    for (const sub of subs) {
      const record: SubRecord = { qos: sub.qos, rh: sub.rh, rap: sub.rap, nl: sub.nl }
      // The MQTT 5 subscription identifier only when present, as the reference keeps it.
      if (sub.subscriptionIdentifier !== undefined) record.subscriptionIdentifier = sub.subscriptionIdentifier
      this.#subscriptions.add(client.id, sub.topic, record)
      rows.push([sub.topic, JSON.stringify(record)])
    }
    const id = client.id
    return this.#write(() => {
      for (const [topic, record] of rows) this.#stmt.putSub.run(id, topic, record)
    })
  }

  async removeSubscriptions(client: Client, topics: string[]): Promise<void> {
    this.#lastList = undefined
    if (!this.#subscriptions.remove(client.id, topics)) return
    const id = client.id
    return this.#write(() => {
      for (const topic of topics) this.#stmt.delSub.run(id, topic)
    })
  }

  async subscriptionsByClient(client: Client): Promise<(SubRecord & { topic: string })[]> {
    return this.#subscriptions.of(client.id)
  }

  async countOffline(): Promise<{ subsCount: number; clientsCount: number }> {
    return this.#subscriptions.counts()
  }

  async subscriptionsByTopic(topic: string): Promise<TrieSub[]> {
    return this.#subscriptions.matching(topic)
  }

  async cleanSubscriptions(client: Client): Promise<void> {
    this.#lastList = undefined
    if (!this.#subscriptions.clear(client.id)) return
    const id = client.id
    return this.#write(() => this.#stmt.delSubs.run(id))
  }

  getClientList(topic: string): Readable {
    return Readable.from(this.#subscriptions.clientsOf(topic))
  }

  // Outgoing: QoS 1 and 2 packets queued for a client and in flight to it.

  /** Queues a copy of the packet for one client; @returns its row's write, or undefined when its queue is full */
  #enqueue(clientId: string, packet: StoredPacket): (() => void) | undefined {
    const queued = this.#outgoing.add(clientId, packet, asPacket)
    if (queued === undefined) return undefined
    const [meta, payload] = encode(queued.packet)
    return () => this.#stmt.putOutgoing.run(queued.seq, clientId, meta, payload)
  }

  async outgoingEnqueue(sub: { clientId: string }, packet: StoredPacket): Promise<void> {
    const row = this.#enqueue(sub.clientId, packet)
    // aedes then sends it to the (connected) client, and finds it missing: it closes the connection.
    if (row === undefined) return
    return this.#write(row)
  }

  async outgoingEnqueueCombi(subs: { clientId: string }[], packet: StoredPacket): Promise<void> {
    const rows: (() => void)[] = []
    // Once per client: a client whose filters overlap (`a/#` and `a/+`) is matched once per
    // filter. aedes sends it one copy and drops the other as a duplicate, clearing the queue
    // entry of the oldest message not yet sent in its place: that message was never delivered.
    const seen = subs.length > 1 ? new Set<string>() : undefined
    for (const s of subs) {
      if (seen !== undefined) {
        if (seen.has(s.clientId)) continue
        seen.add(s.clientId)
      }
      const row = this.#enqueue(s.clientId, packet)
      if (row !== undefined) rows.push(row)
    }
    if (rows.length === 0) return
    return this.#write(() => {
      for (const row of rows) row()
    })
  }

  /** How the queues stand (see SessionQueueStats). */
  stats(): SessionQueueStats {
    return this.#outgoing.stats()
  }

  async outgoingUpdate(client: Client, packet: StoredPacket): Promise<void> {
    const queue = this.#outgoing.of(client.id) ?? []
    // From the newest: a message is sent (and given its packet id) just after it was queued, and
    // a subscriber with a thousand in flight made a scan from the oldest cost a thousand steps.
    for (let i = queue.length - 1; i >= 0; i--) {
      const q = queue[i]!
      const held = q.packet
      if (held.brokerId === packet.brokerId) {
        if (held.brokerCounter === packet.brokerCounter) {
          // The packet id it goes out with.
          held.messageId = packet.messageId
          const [meta] = encode(held)
          return this.#writes.bookkeeping(() => this.#stmt.setOutgoingMeta.run(meta, q.seq))
        }
        // Packet ids wrap at 65,535: a different counter with the same id is another message; go on.
      } else if (held.messageId === packet.messageId) {
        // A PUBREL takes the place of its QoS 2 PUBLISH.
        q.packet = packet
        const [meta, payload] = encode(packet)
        const id = client.id
        return this.#writes.bookkeeping(() => this.#stmt.putOutgoing.run(q.seq, id, meta, payload))
      }
    }
    throw new Error('no such packet')
  }

  async outgoingClearMessageId(client: Client, packet: StoredPacket): Promise<StoredPacket | undefined> {
    // aedes clears a copy it did not send (a duplicate through a second matching filter) by the
    // copy's packet id, which it never got: the first queued message without one would go
    // instead, never delivered. The message is queued once per client (outgoingEnqueueCombi),
    // for the copy that is sent, so there is nothing to clear.
    if (packet.messageId === undefined || packet.messageId === null) return undefined
    const queue = this.#outgoing.of(client.id)
    if (queue === undefined) return undefined
    const i = queue.findIndex((q) => q.packet.messageId === packet.messageId)
    if (i < 0) return undefined
    const q = this.#outgoing.take(client.id, i)
    await this.#writes.bookkeeping(() => this.#stmt.delOutgoing.run(q.seq))
    return q.packet
  }

  outgoingStream(client: Client): Readable {
    // A copy: the queue changes while aedes reads it (see replay-guard.ts).
    return Readable.from((this.#outgoing.of(client.id) ?? []).map((q) => q.packet))
  }

  // Incoming QoS 2 packets, held from PUBLISH to PUBREL.

  async incomingStorePacket(client: Client, packet: StoredPacket): Promise<void> {
    // A client that sends QoS 2 messages and never releases them (no PUBREL) made the gateway hold
    // each one, up to 65,535 of 1 MiB a client, in memory and in broker.db.
    const waiting = this.#incoming.get(client.id)
    if (waiting !== undefined && waiting.size >= this.#maxIncoming && !waiting.has(packet.messageId!)) {
      throw new OutpostError(ErrorCode.STORE_FULL, `client has ${waiting.size} QoS 2 messages waiting for their PUBREL, the most it may have; connection closed`)
    }
    const stored = asPacket(packet)
    stored.messageId = packet.messageId
    this.#incomingOf(client.id).set(packet.messageId!, stored)
    const [meta, payload] = encode(stored)
    const id = client.id
    return this.#write(() => this.#stmt.putIncoming.run(id, packet.messageId, meta, payload))
  }

  async incomingGetPacket(client: Client, packet: StoredPacket): Promise<StoredPacket> {
    const stored = this.#incoming.get(client.id)?.get(packet.messageId!)
    if (stored === undefined) throw new Error('no such packet')
    return stored
  }

  async incomingDelPacket(client: Client, packet: StoredPacket): Promise<void> {
    const store = this.#incoming.get(client.id)
    if (store === undefined || !store.delete(packet.messageId!)) throw new Error('no such packet')
    if (store.size === 0) this.#incoming.delete(client.id)
    const id = client.id
    return this.#write(() => this.#stmt.delIncoming.run(id, packet.messageId))
  }

  async cleanIncoming(client: Client): Promise<void> {
    if (!this.#incoming.delete(client.id)) return
    const id = client.id
    return this.#write(() => this.#stmt.delIncomingOf.run(id))
  }

  // Wills.

  async putWill(client: Client, packet: StoredPacket): Promise<void> {
    packet.brokerId = this.#broker?.id
    packet.clientId = client.id
    this.#wills.set(client.id, packet)
    const [meta, payload] = encode(packet)
    const id = client.id
    return this.#write(() => this.#stmt.putWill.run(id, meta, payload))
  }

  async getWill(client: Client): Promise<StoredPacket | undefined> {
    return this.#wills.get(client.id)
  }

  async delWill(client: Client): Promise<StoredPacket | undefined> {
    const will = this.#wills.get(client.id)
    if (will === undefined) return undefined
    this.#wills.delete(client.id)
    const id = client.id
    await this.#write(() => this.#stmt.delWill.run(id))
    return will
  }

  /** Wills of brokers not in `brokers` (the ones alive): after a restart, those of the broker that went down. */
  streamWill(brokers: Record<string, unknown> = {}): Readable {
    return Readable.from([...this.#wills.values()].filter((w) => !brokers[w.brokerId!]))
  }

  /** Writes what is pending and closes the file; idempotent. */
  async destroy(): Promise<void> {
    if (this.#closed) return
    this.#writes.close()
    this.#closed = true
    this.#database.close()
  }

  /** The same as `destroy`. */
  close(): Promise<void> {
    return this.destroy()
  }
}

/** The persistence aedes takes. */
export type BrokerPersistence = SqlitePersistence

/**
 * Opens `<dataDir>/broker.db` (created when missing; a damaged one moved aside, see above) and
 * loads the broker state it holds.
 * @throws STORE_IN_USE (another gateway runs on this file), STORE_READ_ONLY, STORE_FULL, STORE_FAILED (e.g. a newer schema)
 */
export function createSqlitePersistence(opts: SqlitePersistenceOptions): SqlitePersistence {
  return new SqlitePersistence(opts)
}
