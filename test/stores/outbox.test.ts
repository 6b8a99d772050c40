import { createMemoryOutbox } from '../../runtime/index.js'
import { createSqliteOutbox } from '../../runtime/stores/sqlite/index.js'
import { describeOutboxContract } from '../contracts/outbox.contract.js'
import { storeOnTempDatabase } from '../helpers/sqlite.js'

describeOutboxContract('memory', {
  create: (limits) => ({ outbox: createMemoryOutbox({ limits }), dispose: () => {} }),
  durable: false,
})

describeOutboxContract('sqlite', {
  create(limits) {
    const t = storeOnTempDatabase((d) => createSqliteOutbox(d, { limits }))
    return { outbox: t.store, reopen: t.reopen, dispose: t.dispose }
  },
  durable: true,
})
