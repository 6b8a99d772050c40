import type * as v from 'valibot'
import type { QueueSpec } from '../contract/queue.js'
import type { EnqueueOptions, JobRef } from '../contract/service.js'
import type { Job, JobState, QueueMetrics, QueueStore } from '../ports/queue-store.js'

/** Operations on one queue: what an operator does (also what `outpost jobs` does on a device database). */
export interface QueueOps {
  /** The queue's name in the store (`<service>/<queue>`). */
  readonly key: string
  /** A job of this queue by id. */
  get(id: string): Job | undefined
  metrics(): QueueMetrics & { paused: boolean }
  /** Dead letters, oldest first, with the reason each died. */
  listDead(limit?: number): Job[]
  /** Dead jobs (all, or the given ids) back to ready with fresh attempts. @returns how many */
  redrive(ids?: string[]): number
  /** Deletes the jobs in one state. @returns how many */
  purge(state: JobState): number
  /** Stops handing out jobs (running ones finish); kept across restarts. */
  pause(): void
  resume(): void
  /** A ready or running job goes to the dead letters (`cancelled`); a running worker's signal aborts. */
  cancel(id: string): Job | undefined
}

/** A typed queue of a service hosted by this runtime: enqueue plus the operations. */
export interface QueueHandle<S extends QueueSpec = QueueSpec> extends QueueOps {
  /** Adds a job; committed when it returns. @throws VALIDATION_FAILED, STORE_FAILED */
  enqueue(payload: v.InferInput<S['payload']>, opts?: EnqueueOptions): JobRef
  /** Adds several jobs in one commit. @throws VALIDATION_FAILED (nothing is added then) */
  enqueueMany(items: { payload: v.InferInput<S['payload']>; opts?: EnqueueOptions }[]): JobRef[]
}

/** What a running runtime does when an operation changes a queue. */
export interface QueueOpsHooks {
  /** Jobs may be ready now (redrive, resume). */
  wake(): void
  /** A job was cancelled. */
  cancelled(job: Job): void
}

const NO_HOOKS: QueueOpsHooks = { wake: () => undefined, cancelled: () => undefined }

/** Operations on the queue `key` of a store. A job id of another queue is not found here. */
export function createQueueOps(store: QueueStore, key: string, now: () => number, hooks: QueueOpsHooks = NO_HOOKS): QueueOps {
  const mine = (job: Job | undefined): Job | undefined => (job?.queue === key ? job : undefined)
  return {
    key,
    get: (id) => mine(store.get(id)),
    metrics: () => ({ ...store.metrics(key, now()), paused: store.isPaused(key) }),
    listDead: (limit = 100) => store.listDead(key, limit),
    redrive(ids) {
      const n = store.redrive(key, now(), ids)
      if (n > 0) hooks.wake()
      return n
    },
    purge: (state) => store.purge(key, state),
    pause: () => store.setPaused(key, true),
    resume() {
      store.setPaused(key, false)
      hooks.wake()
    },
    cancel(id) {
      const before = mine(store.get(id))
      if (before === undefined) return undefined
      if (before.state !== 'ready' && before.state !== 'leased') return before
      const after = store.cancel(id, now())
      if (after !== undefined) hooks.cancelled(before)
      return after
    },
  }
}
