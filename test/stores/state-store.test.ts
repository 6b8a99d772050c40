import { createMemoryStateStore } from '../../runtime/index.js'
import { createSqliteStateStore } from '../../runtime/stores/sqlite/index.js'
import { describeStateStoreContract } from '../contracts/state-store.contract.js'
import { storeOnTempDatabase } from '../helpers/sqlite.js'

describeStateStoreContract('memory', {
  create: () => ({ store: createMemoryStateStore(), dispose: () => {} }),
  durable: false,
})

describeStateStoreContract('sqlite', {
  create: () => storeOnTempDatabase((d) => createSqliteStateStore(d)),
  durable: true,
})
