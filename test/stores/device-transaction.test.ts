import { createMemoryOutbox, createMemoryQueueStore, createMemoryTransaction } from '../../runtime/index.js'
import { createSqliteOutbox, createSqliteQueueStore } from '../../runtime/stores/sqlite/index.js'
import { describeDeviceTransactionContract } from '../contracts/device-transaction.contract.js'
import { storeOnTempDatabase } from '../helpers/sqlite.js'

describeDeviceTransactionContract('sqlite (one device database)', {
  durable: true,
  create() {
    const t = storeOnTempDatabase((d) => ({ store: createSqliteQueueStore(d), outbox: createSqliteOutbox(d) }))
    return { ...t.store, dispose: t.dispose }
  },
})

describeDeviceTransactionContract('memory (one createMemoryTransaction)', {
  durable: false,
  create() {
    const transaction = createMemoryTransaction()
    return { store: createMemoryQueueStore({ transaction }), outbox: createMemoryOutbox({ transaction }), dispose: () => undefined }
  },
})
