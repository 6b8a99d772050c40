/**
 * The in-memory stores (`outpost/stores/memory`): state, outbox, inbox and queues that live as
 * long as the process. What a runtime uses when it is given no store, and what tests and
 * simulations use; `outpost/stores/sqlite` has the durable ones with the same ports.
 */
export { createMemoryStateStore } from './memory-state-store.js'
export { createMemoryOutbox } from './memory-outbox.js'
export { createMemoryInbox } from './memory-inbox.js'
export { createMemoryQueueStore } from './memory-queue-store.js'
export { createMemoryTransaction } from './memory-transaction.js'
