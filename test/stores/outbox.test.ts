import { createMemoryOutbox } from '../../runtime/index.js'
import { createSqliteOutbox } from '../../runtime/stores/sqlite/index.js'
import { describeOutboxContract } from '../contracts/outbox.contract.js'
import { storeOnTempDatabase } from '../helpers/sqlite.js'

describeOutboxContract('memory', {
  create: (limits) => ({ outbox: createMemoryOutbox({ limits }), dispose: () => {} }),
  skip: [{ test: 'keeps entries and their order across a reopen', reason: 'memory is not durable by design' }],
})

describeOutboxContract('sqlite', {
  create(limits) {
    const t = storeOnTempDatabase((d) => createSqliteOutbox(d, { limits }))
    return { outbox: t.store, reopen: t.reopen, dispose: t.dispose }
  },
})
