// createRuntime: a runtime on the stores it is given, and on memory stores (gone with the
// process) for those it is not. The composition itself is runtime-with-stores.ts.
import { createMemoryInbox } from '../stores/memory/memory-inbox.js'
import { createMemoryQueueStore } from '../stores/memory/memory-queue-store.js'
import { createMemoryStateStore } from '../stores/memory/memory-state-store.js'
import type { Runtime, RuntimeOptions } from './runtime-api.js'
import { createRuntimeWithStores } from './runtime-with-stores.js'

export type { Runtime, RuntimeOptions, RuntimeStats, RuntimeStatsReport, RuntimeWithStoresOptions } from './runtime-api.js'
export { createRuntimeWithStores } from './runtime-with-stores.js'

/**
 * Creates a runtime for one device. A state store, queue store or inbox not given is a memory
 * one (see RuntimeOptions). @throws INVALID_CONFIG when a service is registered twice
 */
export function createRuntime(opts: RuntimeOptions): Runtime {
  return createRuntimeWithStores({
    ...opts,
    stateStore: opts.stateStore ?? createMemoryStateStore(),
    queueStore: opts.queueStore ?? createMemoryQueueStore(),
    inbox: opts.inbox ?? createMemoryInbox(opts.inboxSize ?? 10_000),
  })
}
