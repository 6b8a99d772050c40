import type { Inbox, InboxRecord } from '../../ports/inbox.js'
import { createRecentMap } from '../../recent-map.js'

/** Creates an inbox in memory remembering the last `window` ids (default 10 000). */
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
