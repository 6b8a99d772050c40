import { createMemoryQueueStore } from '../../runtime/index.js'
import { createSqliteQueueStore } from '../../runtime/stores/sqlite/index.js'
import { describeQueueStoreContract } from '../contracts/queue-store.contract.js'
import { storeOnTempDatabase } from '../helpers/sqlite.js'

describeQueueStoreContract('sqlite', {
  durable: true,
  create: () => storeOnTempDatabase((d) => createSqliteQueueStore(d)),
})

describeQueueStoreContract('memory', {
  durable: false,
  create: () => ({ store: createMemoryQueueStore(), dispose: () => undefined }),
})
