import { createRequire } from 'node:module'
import { Readable } from 'node:stream'
import type { Logger } from 'pino'
import { ErrorCode, errorCode, errorMessage, OutpostError } from '../../runtime/errors.js'
import { openDeviceDatabase, type DeviceDatabase, type Migration } from '../../runtime/stores/sqlite/index.js'
import { diskIsFull } from '../../runtime/stores/sqlite/store-error.js'

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

// CommonJS packages without type declarations; only the part used here is typed.
const require = createRequire(import.meta.url)
interface TrieSub {
  clientId: string
  topic: string
  qos: number
  rh?: number
  rap?: boolean
  nl?: boolean
}
interface QlobberSubLike {
  add(topic: string, sub: TrieSub): void
  remove(topic: string, sub: { clientId: string; topic: string }): void
  match(topic: string): TrieSub[]
  readonly subscriptionsCount: number
}
const QlobberSub = require('qlobber/aedes/qlobber-sub') as new (opts: object) => QlobberSubLike
const { QlobberTrue } = require('qlobber') as { QlobberTrue: new (opts: object) => { add(t: string): void; test(t: string): boolean } }
const Packet = require('aedes-packet') as new (original: object, broker?: object) => StoredPacket

const QLOBBER_OPTIONS = { wildcard_one: '+', wildcard_some: '#', separator: '/' }

/** A packet as aedes hands it to the persistence (an aedes-packet, or a plain object for wills and retained messages). */
export interface StoredPacket {
  cmd?: string
  topic: string
  payload: Buffer | Uint8Array | string
  qos?: number
  retain?: boolean
  dup?: boolean
  messageId?: number
  brokerId?: string
  brokerCounter?: number
  clientId?: string
  properties?: Record<string, unknown>
  messageExpiry?: number
  [field: string]: unknown
}

/** A subscription as the client list keeps it (MQTT 5 options and identifier included). */
interface SubRecord {
  qos: number
  rh?: number
  rap?: boolean
  nl?: boolean
  subscriptionIdentifier?: number
}

interface Client {
  id: string
}

/** The aedes instance the persistence serves (only its id is used: wills carry it). */
interface BrokerLike {
  id: string
}

/** One packet of a client's outgoing queue and its row in the file. */
interface Queued {
  seq: number
  packet: StoredPacket
  /** What it counts for in its client's byte budget (kept: a PUBREL takes the place of its PUBLISH). */
  bytes: number
}

/** broker.db's schema, oldest first. Append only: never edit a released step. */
export const BROKER_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'broker state: subscriptions, retained messages, outgoing queues, incoming QoS 2, wills',
    up(db) {
      db.exec(`
        CREATE TABLE subscriptions (
          client_id TEXT NOT NULL,
          topic     TEXT NOT NULL,
          record    TEXT NOT NULL,
          PRIMARY KEY (client_id, topic)
        ) WITHOUT ROWID;
        CREATE TABLE retained (
          topic   TEXT PRIMARY KEY,
          meta    TEXT NOT NULL,
          payload BLOB NOT NULL
        ) WITHOUT ROWID;
        CREATE TABLE outgoing (
          seq       INTEGER PRIMARY KEY,
          client_id TEXT    NOT NULL,
          meta      TEXT    NOT NULL,
          payload   BLOB    NOT NULL
        );
        CREATE TABLE incoming (
          client_id  TEXT    NOT NULL,
          message_id INTEGER NOT NULL,
          meta       TEXT    NOT NULL,
          payload    BLOB    NOT NULL,
          PRIMARY KEY (client_id, message_id)
        ) WITHOUT ROWID;
        CREATE TABLE wills (
          client_id TEXT PRIMARY KEY,
          meta      TEXT NOT NULL,
          payload   BLOB NOT NULL
        ) WITHOUT ROWID;
      `)
    },
  },
]

// A Buffer inside a packet (MQTT 5 correlation data, say) is written as { "\u0000b": base64 }:
// MQTT strings may not hold U+0000, so no property of a client's can take that shape.
const BUF = '\u0000b'
function replacer(this: Record<string, unknown>, key: string, value: unknown): unknown {
  const raw = this[key]
  if (raw instanceof Uint8Array) return { [BUF]: Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64') }
  return value
}
const reviver = (_key: string, value: unknown): unknown => {
  if (value !== null && typeof value === 'object' && typeof (value as Record<string, unknown>)[BUF] === 'string') {
    return Buffer.from((value as Record<string, string>)[BUF]!, 'base64')
  }
  return value
}

/** A packet as two columns: its fields (JSON, Buffers included) and its payload bytes. */
function encode(packet: StoredPacket): [string, Buffer] {
  const { payload, ...meta } = packet
  const bytes = typeof payload === 'string' ? Buffer.from(payload) : payload instanceof Uint8Array ? Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength) : Buffer.alloc(0)
  // Only MQTT 5 properties hold Buffers; the other fields are strings, numbers and booleans, and a
  // replacer function would slow every QoS 1 delivery's write.
  return [meta.properties === undefined ? JSON.stringify(meta) : JSON.stringify(meta, replacer), bytes]
}
const decodePlain = (meta: string, payload: Buffer): StoredPacket => ({ ...(JSON.parse(meta, reviver) as object), payload }) as StoredPacket
/** An aedes-packet again, with the packet id it had (the constructor clears it). */
function decodePacket(meta: string, payload: Buffer): StoredPacket {
  const plain = decodePlain(meta, payload)
  const packet = new Packet(plain)
  if (plain.messageId !== undefined) packet.messageId = plain.messageId
  return packet
}

export interface SqlitePersistenceOptions {
  /** The broker database file, `<dataDir>/broker.db`. */
  path: string
  log?: Logger
  /**
   * Most QoS 2 messages one client may have waiting for their PUBREL (default 64); one more is
   * refused and aedes closes the connection. Each is held in memory and in the file until then.
   */
  maxIncomingPerClient?: number
  /**
   * Most QoS 1 and 2 messages queued for one client (in flight to it, or waiting for its
   * persistent session to come back), default 10 000; 0: no limit. A message for a client whose
   * queue is full is not queued for it (counted in `stats().dropped`; the client's later messages
   * still are once its queue shrinks), as Mosquitto's `max_queued_messages` does. A connected
   * client whose queue is full is disconnected: it gets what is queued when it returns.
   */
  maxQueuedMessages?: number
  /** Most payload and topic bytes queued for one client, default 64 MiB; 0: no limit. As `maxQueuedMessages`. */
  maxQueuedBytes?: number
  /** Shortest time between two log lines about one client's full queue, ms (default 60 000). */
  logIntervalMs?: number
}

/** How the queues of persistent sessions stand, for metrics. */
export interface SessionQueueStats {
  /** Messages queued over all clients now. */
  queued: number
  /** Their payload and topic bytes. */
  queuedBytes: number
  /** Messages not queued for a client since start, its queue being full. */
  dropped: number
}

/**
 * The aedes persistence on SQLite (see the top of this file). One object serves every broker
 * started on it in the process (a drill stops the broker and starts another): `setup` only
 * takes the new broker, and aedes 1.x never calls `destroy` when it closes; `destroy` (or
 * `close`) writes what is pending and closes the file, once, when the gateway closes.
 */
export class SqlitePersistence {
  readonly #database: DeviceDatabase
  readonly #log: Logger | undefined
  #broker: BrokerLike | undefined
  // The state in memory (the file's copy), keyed as the reference keeps it.
  readonly #retained = new Map<string, StoredPacket>()
  readonly #subscriptions = new Map<string, Map<string, SubRecord>>()
  /**
   * The filter list last stored, and for whom, while no other change to subscriptions followed.
   * aedes calls addSubscriptions once per filter of a SUBSCRIBE, in one go, each time with all of
   * the packet's filters: n² rows for a packet of n, which a device with a persistent session
   * turned into minutes of a blocked event loop and gigabytes of memory.
   */
  #lastList: { subs: object; clientId: string } | undefined
  readonly #outgoing = new Map<string, Queued[]>()
  /** Bytes queued per client (payload and topic), beside `#outgoing`. */
  readonly #outgoingBytes = new Map<string, number>()
  readonly #maxQueued: number
  readonly #maxQueuedBytes: number
  readonly #logIntervalMs: number
  /** When a client's full queue was last logged. */
  readonly #fullLogged = new Map<string, number>()
  #queued = 0
  #queuedBytes = 0
  #dropped = 0
  readonly #incoming = new Map<string, Map<number, StoredPacket>>()
  readonly #maxIncoming: number
  readonly #wills = new Map<string, StoredPacket>()
  readonly #trie = new QlobberSub(QLOBBER_OPTIONS)
  #clientsCount = 0
  #nextSeq = 1
  // Writes waiting for this turn's transaction, and who waits for them.
  #writes: (() => void)[] = []
  #waiting: { resolve: () => void; reject: (err: unknown) => void }[] = []
  #flushScheduled = false
  #closed = false
  /** The commits failing since `since` (full, read-only or locked disk), until one goes through. */
  #failure: { code: ErrorCode; since: number; failures: number; logged: boolean } | undefined
  /** When a failure of each code was last logged, and how many came since without a line. */
  readonly #failLogged = new Map<ErrorCode, { at: number; unlogged: number }>()
  #probedAt = 0
  readonly #stmt

  constructor(opts: SqlitePersistenceOptions) {
    this.#log = opts.log
    this.#maxIncoming = opts.maxIncomingPerClient ?? 64
    this.#maxQueued = opts.maxQueuedMessages ?? DEFAULT_MAX_QUEUED_MESSAGES
    this.#maxQueuedBytes = opts.maxQueuedBytes ?? DEFAULT_MAX_SESSION_BYTES
    this.#logIntervalMs = opts.logIntervalMs ?? 60_000
    // Synchronous NORMAL in WAL: a commit survives the process being killed (kill -9); a power
    // cut may take the last ones (see the top of this file and docs/gateway.md).
    // A short busy wait: better-sqlite3 waits synchronously, and another process holding broker.db
    // (someone's sqlite3 shell) froze MQTT and HTTP for 5 s per commit. A commit that gives up
    // fails its writes: no PUBACK, the clients send again.
    this.#database = openDeviceDatabase({ path: opts.path, migrations: BROKER_MIGRATIONS, synchronous: 'NORMAL', onCorrupt: 'fresh', busyTimeoutMs: 200 })
    if (this.#database.quarantinedTo !== undefined) {
      this.#log?.warn({ path: opts.path, movedTo: this.#database.quarantinedTo, reason: this.#database.quarantineReason }, 'broker database was damaged: moved aside, the broker starts with no sessions, retained messages or queues')
    }
    const db = this.#database.db
    this.#stmt = {
      putSub: db.prepare('INSERT OR REPLACE INTO subscriptions (client_id, topic, record) VALUES (?, ?, ?)'),
      delSub: db.prepare('DELETE FROM subscriptions WHERE client_id = ? AND topic = ?'),
      delSubs: db.prepare('DELETE FROM subscriptions WHERE client_id = ?'),
      putRetained: db.prepare('INSERT OR REPLACE INTO retained (topic, meta, payload) VALUES (?, ?, ?)'),
      delRetained: db.prepare('DELETE FROM retained WHERE topic = ?'),
      putOutgoing: db.prepare('INSERT OR REPLACE INTO outgoing (seq, client_id, meta, payload) VALUES (?, ?, ?, ?)'),
      setOutgoingMeta: db.prepare('UPDATE outgoing SET meta = ? WHERE seq = ?'),
      delOutgoing: db.prepare('DELETE FROM outgoing WHERE seq = ?'),
      putIncoming: db.prepare('INSERT OR REPLACE INTO incoming (client_id, message_id, meta, payload) VALUES (?, ?, ?, ?)'),
      delIncoming: db.prepare('DELETE FROM incoming WHERE client_id = ? AND message_id = ?'),
      delIncomingOf: db.prepare('DELETE FROM incoming WHERE client_id = ?'),
      putWill: db.prepare('INSERT OR REPLACE INTO wills (client_id, meta, payload) VALUES (?, ?, ?)'),
      delWill: db.prepare('DELETE FROM wills WHERE client_id = ?'),
    }
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
      this.#addSub(r.client_id, r.topic, JSON.parse(r.record) as SubRecord)
    }
    for (const r of db.prepare('SELECT seq, client_id, meta, payload FROM outgoing ORDER BY seq').all() as (Row & { seq: number; client_id: string })[]) {
      const packet = decodePacket(r.meta, r.payload)
      const bytes = packetBytes(packet)
      queueOf(this.#outgoing, r.client_id).push({ seq: r.seq, packet, bytes })
      this.#countQueued(r.client_id, bytes, 1)
      this.#nextSeq = r.seq + 1
    }
    for (const r of db.prepare('SELECT client_id, message_id, meta, payload FROM incoming').all() as (Row & { client_id: string; message_id: number })[]) {
      incomingOf(this.#incoming, r.client_id).set(r.message_id, decodePacket(r.meta, r.payload))
    }
    for (const r of db.prepare('SELECT client_id, meta, payload FROM wills').all() as (Row & { client_id: string })[]) {
      this.#wills.set(r.client_id, decodePlain(r.meta, r.payload))
    }
  }

  /** Queues a write for this turn's transaction. @returns a promise settled once it is committed */
  #write(fn: () => void): Promise<void> {
    if (this.#closed) return Promise.reject(new OutpostError(ErrorCode.STORE_FAILED, 'broker database is closed'))
    this.#writes.push(fn)
    const done = new Promise<void>((resolve, reject) => this.#waiting.push({ resolve, reject }))
    if (!this.#flushScheduled) {
      this.#flushScheduled = true
      setImmediate(() => this.#flush())
    }
    return done
  }

  /**
   * A write of delivery bookkeeping (a packet id given, a message acknowledged): memory is right
   * already, and a failed commit only means the message may be sent again after a restart. It
   * does not fail the delivery: on a full disk every delivery failed, and a returning session
   * was cut off again and again without ever getting its queue (the failure is logged by #flush).
   */
  #bookkeeping(fn: () => void): Promise<void> {
    return this.#write(fn).catch(() => {})
  }

  /** Commits every queued write in one transaction, then settles their promises. */
  #flush(): void {
    this.#flushScheduled = false
    const writes = this.#writes
    const waiting = this.#waiting
    if (writes.length === 0) return
    this.#writes = []
    this.#waiting = []
    try {
      this.#database.transaction(() => {
        for (const w of writes) w()
      })
    } catch (err) {
      // The state in memory is ahead of the file now; what waits is told (a QoS 1 PUBLISH gets no
      // PUBACK, its client is disconnected and sends it again), and the broker goes on.
      this.#writeFailed(err)
      for (const w of waiting) w.reject(err)
      return
    }
    if (this.#failure !== undefined) this.#writable()
    for (const w of waiting) w.resolve()
  }

  /**
   * Notes a commit that failed. On a full, read-only or locked disk every turn with a write fails,
   * hundreds a second under a flood, and a disk with a little room fails and succeeds by turns:
   * each code is logged at most once a minute, with the count of failures the line stands for,
   * so the log cannot fill what is left of the disk.
   */
  #writeFailed(err: unknown): void {
    const code = errorCode(err)
    const now = Date.now()
    if (this.#failure?.code !== code) this.#failure = { code, since: now, failures: 0, logged: false }
    const f = this.#failure
    f.failures++
    const last = this.#failLogged.get(code)
    if (last !== undefined && now - last.at < this.#logIntervalMs) {
      last.unlogged++
      return
    }
    this.#failLogged.set(code, { at: now, unlogged: 0 })
    f.logged = true
    this.#log?.error(
      { code, err: errorMessage(err), count: (last?.unlogged ?? 0) + 1, since: new Date(f.since).toISOString() },
      `${code}: broker database cannot be written; QoS 1 messages are not acknowledged and state changes not kept until it can`,
    )
  }

  /** A commit went through again after failures: said when the failure was. */
  #writable(): void {
    const f = this.#failure!
    this.#failure = undefined
    if (f.logged) this.#log?.warn({ code: f.code, failures: f.failures, forMs: Date.now() - f.since }, 'broker database takes writes again')
  }

  /**
   * Whether broker.db takes commits now, for readiness. After a failed commit it is not, until a
   * commit goes through; with no traffic none would, so this tries one itself (at most once a
   * second, without waiting for a lock): PRAGMA user_version set to what it is, which writes the
   * header page like any change and alters nothing. After STORE_FULL the disk must also have
   * room again: the failed commit left log space behind that a one-page commit fits in, while
   * the next message does not.
   */
  writable(): boolean {
    if (this.#closed) return false
    if (this.#failure === undefined) return true
    if (this.#failure.code === ErrorCode.STORE_FULL && diskIsFull(this.#database.path)) return false
    const now = Date.now()
    if (now - this.#probedAt < 1_000) return false
    this.#probedAt = now
    const db = this.#database.db
    if (db.inTransaction) return false
    const busy = db.pragma('busy_timeout', { simple: true }) as number
    try {
      db.pragma('busy_timeout = 0')
      const version = db.pragma('user_version', { simple: true }) as number
      this.#database.transaction(() => db.pragma(`user_version = ${version}`))
    } catch {
      return false
    } finally {
      db.pragma(`busy_timeout = ${busy}`)
    }
    this.#writable()
    return true
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
    const retained = this.#retained
    return Readable.from(
      (function* () {
        for (const pattern of patterns) {
          const q = new QlobberTrue(QLOBBER_OPTIONS)
          q.add(pattern)
          for (const [topic, packet] of retained) if (q.test(topic)) yield packet
        }
      })(),
    )
  }

  // Subscriptions.

  /** Adds a subscription in memory (the client list and, for QoS > 0, the topic trie). */
  #addSub(clientId: string, topic: string, record: SubRecord): void {
    let stored = this.#subscriptions.get(clientId)
    if (stored === undefined) {
      stored = new Map()
      this.#subscriptions.set(clientId, stored)
      this.#clientsCount++
    }
    const before = stored.get(topic)
    if (record.qos > 0) {
      this.#trie.add(topic, { clientId, topic, qos: record.qos, rh: record.rh, rap: record.rap, nl: record.nl })
    } else if (before !== undefined && before.qos > 0) {
      this.#trie.remove(topic, { clientId, topic })
    }
    stored.set(topic, record)
  }

  async addSubscriptions(client: Client, subs: (SubRecord & { topic: string })[]): Promise<void> {
    // The same packet again, nothing changed since: it is stored, or in the transaction to come (waited for).
    if (this.#lastList?.subs === subs && this.#lastList.clientId === client.id) return this.#flushScheduled ? this.#write(() => {}) : undefined
    this.#lastList = { subs, clientId: client.id }
    const rows: [string, string][] = []
    for (const sub of subs) {
      const record: SubRecord = { qos: sub.qos, rh: sub.rh, rap: sub.rap, nl: sub.nl }
      // The MQTT 5 subscription identifier only when present, as the reference keeps it.
      if (sub.subscriptionIdentifier !== undefined) record.subscriptionIdentifier = sub.subscriptionIdentifier
      this.#addSub(client.id, sub.topic, record)
      rows.push([sub.topic, JSON.stringify(record)])
    }
    const id = client.id
    return this.#write(() => {
      for (const [topic, record] of rows) this.#stmt.putSub.run(id, topic, record)
    })
  }

  async removeSubscriptions(client: Client, topics: string[]): Promise<void> {
    this.#lastList = undefined
    const stored = this.#subscriptions.get(client.id)
    if (stored === undefined) return
    for (const topic of topics) {
      const sub = stored.get(topic)
      if (sub === undefined) continue
      if (sub.qos > 0) this.#trie.remove(topic, { clientId: client.id, topic })
      stored.delete(topic)
    }
    if (stored.size === 0) {
      this.#clientsCount--
      this.#subscriptions.delete(client.id)
    }
    const id = client.id
    return this.#write(() => {
      for (const topic of topics) this.#stmt.delSub.run(id, topic)
    })
  }

  async subscriptionsByClient(client: Client): Promise<(SubRecord & { topic: string })[]> {
    const subs: (SubRecord & { topic: string })[] = []
    for (const [topic, record] of this.#subscriptions.get(client.id) ?? []) subs.push({ topic, ...record })
    return subs
  }

  async countOffline(): Promise<{ subsCount: number; clientsCount: number }> {
    return { subsCount: this.#trie.subscriptionsCount, clientsCount: this.#clientsCount }
  }

  async subscriptionsByTopic(topic: string): Promise<TrieSub[]> {
    return this.#trie.match(topic)
  }

  async cleanSubscriptions(client: Client): Promise<void> {
    this.#lastList = undefined
    const stored = this.#subscriptions.get(client.id)
    if (stored === undefined) return
    for (const [topic, sub] of stored) if (sub.qos > 0) this.#trie.remove(topic, { clientId: client.id, topic })
    this.#clientsCount--
    this.#subscriptions.delete(client.id)
    const id = client.id
    return this.#write(() => this.#stmt.delSubs.run(id))
  }

  getClientList(topic: string): Readable {
    const subscriptions = this.#subscriptions
    return Readable.from(
      (function* () {
        for (const [clientId, topics] of subscriptions) if (topics.has(topic)) yield clientId
      })(),
    )
  }

  // Outgoing: QoS 1 and 2 packets queued for a client and in flight to it.

  /** Adds a message of `bytes` to a client's queue counts (`sign` 1), or takes one away (-1). */
  #countQueued(clientId: string, bytes: number, sign: 1 | -1): void {
    this.#queued += sign
    this.#queuedBytes += sign * bytes
    const left = (this.#outgoingBytes.get(clientId) ?? 0) + sign * bytes
    if (left > 0) this.#outgoingBytes.set(clientId, left)
    else this.#outgoingBytes.delete(clientId)
  }

  /** Whether a client's queue has room for a message of `bytes`; counts and logs (once a while) when not. */
  #hasRoom(clientId: string, bytes: number): boolean {
    const count = this.#outgoing.get(clientId)?.length ?? 0
    const held = this.#outgoingBytes.get(clientId) ?? 0
    const full = (this.#maxQueued > 0 && count >= this.#maxQueued) || (this.#maxQueuedBytes > 0 && count > 0 && held + bytes > this.#maxQueuedBytes)
    if (!full) return true
    this.#dropped++
    const now = Date.now()
    const last = this.#fullLogged.get(clientId)
    if (last === undefined || now - last >= this.#logIntervalMs) {
      this.#fullLogged.set(clientId, now)
      if (this.#fullLogged.size > 10_000) this.#fullLogged.clear()
      this.#log?.warn(
        { clientId, queued: count, queuedBytes: held, maxQueuedMessages: this.#maxQueued, maxQueuedBytes: this.#maxQueuedBytes, droppedSinceStart: this.#dropped },
        'queue of a client is full: new QoS 1/2 messages for it are not kept until it takes some',
      )
    }
    return false
  }

  /** Queues a copy of the packet for one client; @returns its row's write, or undefined when its queue is full */
  #enqueue(clientId: string, packet: StoredPacket): (() => void) | undefined {
    const bytes = packetBytes(packet)
    if (!this.#hasRoom(clientId, bytes)) return undefined
    const queued = { seq: this.#nextSeq++, packet: new Packet(packet), bytes }
    queueOf(this.#outgoing, clientId).push(queued)
    this.#countQueued(clientId, bytes, 1)
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
    return { queued: this.#queued, queuedBytes: this.#queuedBytes, dropped: this.#dropped }
  }

  async outgoingUpdate(client: Client, packet: StoredPacket): Promise<void> {
    const queue = this.#outgoing.get(client.id) ?? []
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
          return this.#bookkeeping(() => this.#stmt.setOutgoingMeta.run(meta, q.seq))
        }
        // Packet ids wrap at 65,535: a different counter with the same id is another message; go on.
      } else if (held.messageId === packet.messageId) {
        // A PUBREL takes the place of its QoS 2 PUBLISH.
        q.packet = packet
        const [meta, payload] = encode(packet)
        const id = client.id
        return this.#bookkeeping(() => this.#stmt.putOutgoing.run(q.seq, id, meta, payload))
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
    const queue = this.#outgoing.get(client.id)
    if (queue === undefined) return undefined
    const i = queue.findIndex((q) => q.packet.messageId === packet.messageId)
    if (i < 0) return undefined
    const [q] = queue.splice(i, 1)
    if (queue.length === 0) this.#outgoing.delete(client.id)
    this.#countQueued(client.id, q!.bytes, -1)
    await this.#bookkeeping(() => this.#stmt.delOutgoing.run(q!.seq))
    return q!.packet
  }

  outgoingStream(client: Client): Readable {
    // A copy: the queue changes while aedes reads it.
    return Readable.from((this.#outgoing.get(client.id) ?? []).map((q) => q.packet))
  }

  // Incoming QoS 2 packets, held from PUBLISH to PUBREL.

  async incomingStorePacket(client: Client, packet: StoredPacket): Promise<void> {
    // A client that sends QoS 2 messages and never releases them (no PUBREL) made the gateway hold
    // each one, up to 65,535 of 1 MiB a client, in memory and in broker.db.
    const waiting = this.#incoming.get(client.id)
    if (waiting !== undefined && waiting.size >= this.#maxIncoming && !waiting.has(packet.messageId!)) {
      throw new OutpostError(ErrorCode.STORE_FULL, `client has ${waiting.size} QoS 2 messages waiting for their PUBREL, the most it may have; connection closed`)
    }
    const stored = new Packet(packet)
    stored.messageId = packet.messageId
    incomingOf(this.#incoming, client.id).set(packet.messageId!, stored)
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
    this.#flush()
    this.#closed = true
    this.#database.close()
  }

  /** The same as `destroy`. */
  close(): Promise<void> {
    return this.destroy()
  }
}

/** Default most messages queued for one client. */
export const DEFAULT_MAX_QUEUED_MESSAGES = 10_000
/** Default most bytes queued for one client: 64 MiB. */
export const DEFAULT_MAX_SESSION_BYTES = 64 * 1024 * 1024

/** What a queued message counts for in its client's byte budget: payload and topic. */
function packetBytes(p: StoredPacket): number {
  const payload = typeof p.payload === 'string' ? Buffer.byteLength(p.payload) : (p.payload?.length ?? 0)
  return payload + Buffer.byteLength(p.topic ?? '')
}

function queueOf(map: Map<string, Queued[]>, clientId: string): Queued[] {
  let queue = map.get(clientId)
  if (queue === undefined) map.set(clientId, (queue = []))
  return queue
}

function incomingOf(map: Map<string, Map<number, StoredPacket>>, clientId: string): Map<number, StoredPacket> {
  let store = map.get(clientId)
  if (store === undefined) map.set(clientId, (store = new Map()))
  return store
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
