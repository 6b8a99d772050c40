/**
 * Key-value state, partitioned by scope (one scope per service). Values are any
 * CBOR-encodable data; schema checks happen above this port, in the runtime.
 *
 * - Durability: as the adapter says (SQLite: committed on return, per its `synchronous`
 *   setting; memory: gone with the process).
 * - Ordering: `list` returns entries sorted by key.
 * - Synchronous: stores are local to the device, so no call waits on I/O scheduling.
 * - `close` is the owner's business (the database's), not the store's.
 * - Errors: a storage failure is an OutpostError (`STORE_BUSY` and `STORE_FULL` are retryable:
 *   another process held the write lock past the busy wait, or the disk is full).
 */
export interface StateStore {
  get(scope: string, key: string): unknown
  set(scope: string, key: string, value: unknown): void
  /** True when the key existed. */
  delete(scope: string, key: string): boolean
  /** Entries of a scope whose key starts with `prefix`, sorted by key. */
  list(scope: string, prefix?: string): { key: string; value: unknown }[]
}
