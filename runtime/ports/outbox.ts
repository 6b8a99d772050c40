import type { DeviceTransaction } from './device-transaction.js'

/** One message waiting in the outbox: an encoded envelope and where it goes. */
export interface OutboxEntry {
  /** Position in the outbox; delivery follows it. */
  seq: number
  stream: string
  topic: string
  frame: Uint8Array
  retain: boolean
}

/**
 * The streams a runtime writes: `events`, what services emit (and their jobs' progress and failed
 * attempts), and `results`, jobs' outcomes (completed, dead). Each has its own limit, so that a
 * stream of chatty events, dropping its oldest when full, never pushes out the outcome of a job: a
 * job retried through an hour offline wrote a `failed` event per attempt, and those pushed out the
 * completions of other jobs when they shared `results`.
 */
export type OutboxStream = 'events' | 'results'

/** What to do when a stream's bytes would exceed its limit. */
export type OutboxFullPolicy = 'reject' | 'dropOldest'

/** Byte limit and full policy of one stream (e.g. `events`). */
export interface OutboxStreamLimits {
  maxBytes: number
  policy: OutboxFullPolicy
}

/** Counters of an outbox; nothing leaves it unseen. */
export interface OutboxStats {
  entries: number
  bytes: number
  appended: number
  delivered: number
  /** Appends refused because a `reject` stream was full. */
  rejected: number
  /** Entries dropped, by reason: `full:<stream>` to make room, `too-large:<stream>` when they could never be sent. */
  dropped: Record<string, number>
}

/**
 * Messages a device has produced and not yet handed to the broker.
 *
 * - Durability: an entry is stored when `append` returns (SQLite: committed per its
 *   `synchronous` setting), or when the enclosing `transaction.run` commits, and stays until
 *   `ack` (the broker's PUBACK).
 * - Ordering: `peek` returns entries by `seq`, ascending, across streams.
 * - Bounds: each stream has a byte limit and a full policy; what is refused or dropped is counted.
 * - Capacity does not depend on MQTT packet ids: the backlog is bounded by bytes only.
 */
export interface Outbox {
  /**
   * The device transaction its appends join, given at construction: an append inside
   * `transaction.run` commits, or is undone, with everything else written there (a job's
   * settlement that produced the event). Outside one, an append commits on its own.
   */
  readonly transaction: DeviceTransaction
  /** Stores a message. @throws OUTBOX_FULL when its stream is full and refuses new ones; STORE_BUSY, STORE_FULL (retryable) and other STORE_* codes when storage fails. */
  append(entry: Omit<OutboxEntry, 'seq'>): number
  /** Up to `limit` entries with `seq` greater than `after`, in order. @throws STORE_* when storage cannot be read */
  peek(after: number, limit: number): OutboxEntry[]
  /** Removes a delivered entry (no-op when already gone). Never throws: a removal storage refuses is tried again later (until then the entry may be sent again after a restart). */
  ack(seq: number): void
  /**
   * Removes an entry that can never be delivered (larger than the transport sends, e.g. stored
   * before a lower limit was set), counted in `stats().dropped[reason]` (no-op when already
   * gone). Never throws: a removal storage refuses is tried again later.
   */
  discard(seq: number, reason: string): void
  stats(): OutboxStats
}
