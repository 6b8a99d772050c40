/** The device database (better-sqlite3): a separate entry so memory-only users never load the native addon. */
export { openDeviceDatabase, type DeviceDatabase, type DeviceDatabaseOptions, type Synchronous } from './device-database.js'
export { createSqliteStateStore } from './sqlite-state-store.js'
export { MIGRATIONS, type Migration } from './migrations.js'
export { createSqliteOutbox } from './sqlite-outbox.js'
export { createSqliteInbox } from './sqlite-inbox.js'
export { createSqliteQueueStore } from './sqlite-queue-store.js'
