import type { Envelope } from '../wire/envelope.js'

/** What the inbox knows of a message id. */
export type InboxRecord = { state: 'running'; instance: string } | { state: 'done'; reply: Envelope }

/**
 * Message ids a device has taken on, within a window of the most recent ones, so a message
 * the broker delivers again is recognised.
 *
 * - Durability: as the adapter says (SQLite: `claim` is committed when it returns, so the
 *   broker's acknowledgement, sent after the handler returned, follows the commit).
 * - A `running` record left by an instance that is gone (crash, power cut) means the work may
 *   not have finished: the runtime runs such a command again (at least once).
 */
export interface Inbox {
  get(id: string): InboxRecord | undefined
  /** Records that `instance` has started on `id`. */
  claim(id: string, instance: string): void
  /** Records the reply sent for `id`, to be sent again for a repeat. */
  complete(id: string, reply: Envelope): void
}
