/**
 * One commit across the stores of a device. Stores whose writes must become durable together
 * are built with the same DeviceTransaction: the queue store and the outbox, so that a job's
 * settlement and its result event (or an emitted event and the jobs it binds) commit as one.
 * The runtime runs such work inside `run` of the queue store's transaction; it never relies on
 * one store quietly joining another's transaction.
 *
 * - Atomicity: what the stores built with this transaction write inside `run` commits when `fn`
 *   returns, or, when `fn` throws, is undone (durable adapters: SQLite) and the error rethrown.
 *   Memory stores keep nothing durable: their transaction runs `fn` and undoes nothing.
 * - Nesting: a `run` inside a `run` is a savepoint: its throw undoes only what it wrote, and
 *   the outer `run` may go on.
 * - Synchronous: `fn` must not await; stores are local to the device.
 * - Errors: a storage failure at begin or commit is an OutpostError (`STORE_BUSY`, `STORE_FULL`
 *   retryable), as the stores' own.
 *
 * Adapters: `createMemoryTransaction()` (runtime/stores/memory/memory-transaction.ts) and the
 * SQLite device database's `deviceTransaction` (runtime/stores/sqlite/device-database.ts).
 */
export interface DeviceTransaction {
  /** Runs `fn` as one commit (a savepoint when nested); what it wrote is undone when it throws. */
  run<T>(fn: () => T): T
}
