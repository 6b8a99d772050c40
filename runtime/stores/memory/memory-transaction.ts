import type { DeviceTransaction } from '../../ports/device-transaction.js'

/**
 * Creates the device transaction of memory stores: runs `fn` and undoes nothing (memory stores
 * keep nothing durable, and each of their verbs runs to completion before the next). Give one to
 * a memory queue store and a memory outbox that should be used together, or let each make its own.
 */
export function createMemoryTransaction(): DeviceTransaction {
  return { run: (fn) => fn() }
}
