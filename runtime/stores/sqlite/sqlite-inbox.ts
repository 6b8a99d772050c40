import type { Inbox, InboxRecord } from '../../ports/inbox.js'
import type { Envelope } from '../../wire/envelope.js'
import { createEnvelopeCodec } from '../../wire/codec.js'
import type { DeviceDatabase } from './device-database.js'
import { guardStore } from './store-error.js'

/** Creates the inbox in the device database, remembering the last `window` ids (default 10 000) across restarts. @throws STORE_BUSY, STORE_FULL, STORE_READ_ONLY, STORE_FAILED from its methods */
export function createSqliteInbox(database: DeviceDatabase, opts: { window?: number; now?: () => number } = {}): Inbox {
  const db = database.db
  const window = opts.window ?? 10_000
  const now = opts.now ?? Date.now
  const codec = createEnvelopeCodec()
  const get = db.prepare<[string], { instance: string; reply: Buffer | null }>('SELECT instance, reply FROM inbox WHERE id = ?')
  const claim = db.prepare('INSERT INTO inbox (id, instance, reply, at) VALUES (?, ?, NULL, ?) ON CONFLICT (id) DO UPDATE SET instance = excluded.instance, reply = NULL, at = excluded.at')
  const complete = db.prepare('UPDATE inbox SET reply = ? WHERE id = ?')
  const prune = db.prepare('DELETE FROM inbox WHERE rowid <= (SELECT MAX(rowid) FROM inbox) - ?')
  let claims = 0
  const file = database.path
  return {
    get: guardStore(file, (id: string): InboxRecord | undefined => {
      const row = get.get(id)
      if (row === undefined) return undefined
      if (row.reply === null) return { state: 'running', instance: row.instance }
      const decoded = codec.decode(row.reply)
      // An unreadable stored reply is treated as unfinished work rather than trusted.
      return decoded.ok ? ({ state: 'done', reply: decoded.envelope } satisfies InboxRecord) : { state: 'running', instance: '' }
    }),
    claim: guardStore(file, (id: string, instance: string) => {
      claim.run(id, instance, now())
      if (++claims % 1_000 === 0) prune.run(window)
    }),
    complete: guardStore(file, (id: string, reply: Envelope) => void complete.run(codec.encode(reply), id)),
  }
}
