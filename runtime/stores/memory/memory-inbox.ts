import type { Inbox, InboxRecord } from '../../ports/inbox.js'
import { createRecentMap } from '../../recent-map.js'

/**
 * Creates an inbox in memory remembering the last `window` ids (default 10 000). A reply is
 * kept in the form it was sent (an envelope on the in-process fast path, else its frame): the
 * memory mode never encodes for the inbox's sake.
 */
export function createMemoryInbox(window = 10_000): Inbox {
  const records = createRecentMap<InboxRecord>(window)
  return {
    get: (id) => records.get(id),
    claim: (id, instance) => records.set(id, { state: 'running', instance }),
    complete: (id, reply) => {
      if (records.has(id)) records.set(id, { state: 'done', reply })
    },
  }
}
