import type { Envelope } from '../wire/envelope.js'

/**
 * A reply as the messaging layer sent it, kept so that a repeated command gets it again as it
 * was. Either form is re-sent on the same topic with the reply's QoS:
 * - `frame`: the encoded reply; re-sent byte for byte, neither decoded nor encoded again.
 * - `envelope`: the reply itself, where nothing was encoded (an in-process transport's fast
 *   path) or where the bytes cannot be trusted as they are (a record from before frames were
 *   kept); re-sending it encodes it if the transport needs bytes. Without `topic`, the topic is
 *   found from the envelope again.
 */
export type SentReply =
  | { readonly topic: string; readonly frame: Uint8Array; readonly envelope?: undefined }
  | { readonly topic?: string; readonly frame?: undefined; readonly envelope: Envelope }

/** What the inbox knows of a message id. */
export type InboxRecord = { state: 'running'; instance: string } | { state: 'done'; reply: SentReply }

/**
 * Message ids a device has taken on, within a window of the most recent ones, so a message
 * the broker delivers again is recognised.
 *
 * - Durability: as the adapter says (SQLite: `claim` is committed when it returns, so the
 *   broker's acknowledgement, sent after the handler returned, follows the commit).
 * - A `running` record left by an instance that is gone (crash, power cut) means the work may
 *   not have finished: the runtime runs such a command again (at least once).
 * - Replies: a reply completed as a `frame` comes back as those bytes on that topic. One
 *   completed as an `envelope` comes back as that envelope, or (an adapter that keeps bytes)
 *   as its encoding on the same topic.
 */
export interface Inbox {
  get(id: string): InboxRecord | undefined
  /** Records that `instance` has started on `id`. */
  claim(id: string, instance: string): void
  /** Records the reply sent for `id`, to be sent again for a repeat. */
  complete(id: string, reply: SentReply): void
}
