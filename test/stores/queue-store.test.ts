import { createSqliteQueueStore } from '../../runtime/stores/sqlite/index.js'
import { describeQueueStoreContract } from '../contracts/queue-store.contract.js'
import { storeOnTempDatabase } from '../helpers/sqlite.js'

describeQueueStoreContract('sqlite', {
  create: () => storeOnTempDatabase((d) => createSqliteQueueStore(d)),
})
