import type { Inbox, InboxRecord, SentReply } from '../../ports/inbox.js'
import { createEnvelopeCodec } from '../../wire/codec.js'
import type { DeviceDatabase } from './device-database.js'
import { prepareLater } from './prepare-later.js'
import { guardStore, storeOn } from './store-error.js'

/** A row of the inbox: `reply` is the frame sent on `topic`, or (no topic) an encoded reply envelope. */
interface InboxRow {
  instance: string
  reply: Buffer | null
  topic: string | null
}

/**
 * Creates the inbox in the device database, remembering the last `window` ids (default 10 000)
 * across restarts. A reply is kept as the frame that was sent and its topic (schema v10), so a
 * repeated command gets those bytes back without a decode; a reply handed over unencoded (an
 * in-process transport) is encoded here once. Rows from before v10 hold an encoded envelope and
 * no topic: they are decoded when read, and the messaging layer routes and encodes them again.
 * @throws STORE_BUSY, STORE_FULL, STORE_READ_ONLY, STORE_FAILED from its methods
 */
export function createSqliteInbox(database: DeviceDatabase, opts: { window?: number; now?: () => number } = {}): Inbox {
  return storeOn(database, () => makeSqliteInbox(database, opts))
}

// Built through storeOn: a file that lacks a table is a typed error (store-error.ts).
function makeSqliteInbox(database: DeviceDatabase, opts: { window?: number; now?: () => number } = {}): Inbox {
  const db = database.db
  const window = opts.window ?? 10_000
  const now = opts.now ?? Date.now
  // Replies kept as envelopes (an in-process fast path sends no frame) are stored whatever their
  // size: a frame limit is the bridges' business (runtime/bridges/README.md, outgoing frames).
  const codec = createEnvelopeCodec({ maxFrameBytes: Number.MAX_SAFE_INTEGER })
  const get = db.prepare<[string], InboxRow>('SELECT instance, reply, topic FROM inbox WHERE id = ?')
  const claim = db.prepare('INSERT INTO inbox (id, instance, reply, topic, at) VALUES (?, ?, NULL, NULL, ?) ON CONFLICT (id) DO UPDATE SET instance = excluded.instance, reply = NULL, topic = NULL, at = excluded.at')
  const complete = db.prepare<[Uint8Array, string | null, string]>('UPDATE inbox SET reply = ?, topic = ? WHERE id = ?')
  const prune = prepareLater(db, 'DELETE FROM inbox WHERE rowid <= (SELECT MAX(rowid) FROM inbox) - ?')
  let claims = 0
  const file = database.path
  return {
    get: guardStore(file, (id: string): InboxRecord | undefined => {
      const row = get.get(id)
      if (row === undefined) return undefined
      if (row.reply === null) return { state: 'running', instance: row.instance }
      if (row.topic !== null) return { state: 'done', reply: { topic: row.topic, frame: row.reply } }
      const decoded = codec.decode(row.reply)
      // An unreadable stored reply is treated as unfinished work rather than trusted.
      return decoded.ok ? { state: 'done', reply: { envelope: decoded.envelope } } : { state: 'running', instance: '' }
    }),
    claim: guardStore(file, (id: string, instance: string) => {
      claim.run(id, instance, now())
      if (++claims % 1_000 === 0) prune.run(window)
    }),
    complete: guardStore(file, (id: string, reply: SentReply) => {
      if (reply.frame !== undefined) complete.run(reply.frame, reply.topic, id)
      else complete.run(codec.encode(reply.envelope), reply.topic ?? null, id)
    }),
  }
}
