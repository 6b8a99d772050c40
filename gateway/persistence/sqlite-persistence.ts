import type { AedesOptions } from 'aedes'
import aedesPersistence from 'aedes-persistence'
import type { Logger } from 'pino'

/** The persistence aedes takes. */
export type BrokerPersistence = NonNullable<AedesOptions['persistence']>

export interface SqlitePersistenceOptions {
  /** The broker database file, `<dataDir>/broker.db`. */
  path: string
  log?: Logger
}

/** STUB (issue 13, part D replaces it): in memory. */
export function createSqlitePersistence(_opts: SqlitePersistenceOptions): BrokerPersistence {
  return (aedesPersistence as unknown as () => BrokerPersistence)()
}
