import type { Logger } from 'pino'
import type { AnyContract } from '../contract/contract.js'
import type { ContractClient, InvokeOptions, InvokeTarget, ServiceDefinition } from '../contract/service.js'
import type { MessagingOptions } from '../messaging/messenger.js'
import type { Bridge, BridgeStats } from '../ports/bridge.js'
import type { Clock } from '../ports/clock.js'
import type { Inbox } from '../ports/inbox.js'
import type { Outbox, OutboxStats } from '../ports/outbox.js'
import type { QueueStore } from '../ports/queue-store.js'
import type { StateStore } from '../ports/state-store.js'
import type { QueueHandle } from '../queue/queue-handle.js'
import type { QueueRunStats } from '../queue/queue-runner.js'
import type { SchedulerStats } from '../schedule/scheduler.js'
import type { Directory } from './directory.js'
import type { InboundDeadLetterLimits } from '../queue/service-queues.js'

/** How a runtime is put together; the entry point picks the bridge. */
export interface RuntimeOptions {
  /** The bridge that moves frames (createMemoryBridge, createMqttBridge); the runtime builds its envelope layer on it. */
  bridge: Bridge
  /** Topic prefix, instance id and reply QoS of this runtime's envelopes. */
  messaging?: MessagingOptions
  services?: ServiceDefinition[]
  /**
   * Where emitted events wait until the broker has them (a SQLite outbox on a device, so they
   * survive power cuts and long outages). Without one, an event emitted while offline fails
   * with BRIDGE_UNAVAILABLE.
   */
  outbox?: Outbox
  /** Most outbox messages awaiting the broker's acknowledgement at once (default 128). */
  outboxWindow?: number
  /** Where `ctx.state` lives (default: memory, gone on restart; use createSqliteStateStore on a device). */
  stateStore?: StateStore
  /** Values for the resources services declare. */
  resources?: Record<string, unknown>
  logger?: Logger
  /**
   * The runtime's one time (default: the system clock): envelopes and deadlines, discovery
   * waits, schedules, queues and leases, the outbox pump's retries. A manual clock
   * (createManualClock) lets tests skip ahead instead of waiting; `stop`'s `drainMs` stays real
   * time. Stores take their own `now` (give them `clock.now` to share it).
   */
  clock?: Clock
  /** Deadline of a call that names none (default 5000 ms). */
  defaultTimeoutMs?: number
  /** How long a call waits for a first live instance of its service to be announced (default 1000 ms). */
  discoveryWaitMs?: number
  /** How many recent command and event ids (with replies) are remembered to drop repeats (default 10 000). */
  inboxSize?: number
  /** Where command ids and replies are remembered (default: memory; a SQLite inbox survives restarts). */
  inbox?: Inbox
  /** Allowance for clocks between devices when checking a received deadline (default 2000 ms). */
  clockSkewMs?: number
  /**
   * Where the jobs of the services' queues live (default: memory, gone on restart). Give it a
   * store built with the same device transaction as the outbox (createSqliteQueueStore on the
   * same device database as createSqliteOutbox; or one createMemoryTransaction given to both
   * memory stores), so a job's completion and its result event commit together: the runtime
   * runs that work in `queueStore.transaction` (runtime/ports/device-transaction.ts).
   */
  queueStore?: QueueStore
  /** How often an idle queue looks for jobs another process added (a redrive from the CLI), ms (default 1000). */
  queuePollMs?: number
  /** At stop, jobs whose workers did not finish within `drainMs` are given back (`release`, default) or left to their lease (`expire`). */
  jobsOnStop?: 'release' | 'expire'
  /** Bounds of the dead letters that invalid events arriving over the broker may leave in a queue. */
  inboundDeadLetters?: InboundDeadLetterLimits
}

/**
 * RuntimeOptions with the state store, the queue store and the inbox given: what
 * createRuntimeWithStores takes. A runtime made so needs no memory store, and a device bundle
 * made of it carries none.
 */
export type RuntimeWithStoresOptions = RuntimeOptions & Required<Pick<RuntimeOptions, 'stateStore' | 'queueStore' | 'inbox'>>

/** Counters of one runtime. */
export interface RuntimeStats {
  commandsHandled: number
  commandsFailed: number
  duplicateCommands: number
  expiredCommands: number
  eventsHandled: number
  eventsRejected: number
  duplicateEvents: number
  /** Events turned into jobs by bindings (a repeated delivery is counted in duplicateEvents). */
  eventsBound: number
  /** Events for a binding that could not be stored (store error other than busy, or busy for too long): acknowledged and dropped. */
  eventsNotStored: number
  /** Invalid inbound events not kept as dead letters: their queue held as many as `inboundDeadLetters.maxPerQueue`. */
  deadLettersNotKept: number
  /** Invalid inbound events kept as dead letters with a digest instead of a payload over `inboundDeadLetters.maxPayloadBytes`. */
  deadLettersDigested: number
  /** Frames and messages refused or dropped by this runtime, by reason (each logged at most once a minute). */
  rejections: Record<string, number>
  bridge: BridgeStats
}

/** Everything `Runtime.stats()` reports: the runtime's counters and those of its parts. */
export type RuntimeStatsReport = RuntimeStats & { schedules: SchedulerStats; outbox?: OutboxStats; queues: Record<string, QueueRunStats> }

/** How `Runtime.start` treats the broker. */
export interface StartOptions {
  /** Fail the start when the first connection fails (see Runtime.start), instead of starting offline. */
  waitForBroker?: boolean
  /**
   * Resolve as soon as local work is served (commands between the runtime's own services,
   * schedules, queue workers, events into the outbox), and make the first connection after, in
   * the background: its outcome is logged (`connected to the broker`, or that it runs offline
   * and keeps trying), the presence goes out and the outbox drains once it is up. Ignored with
   * `waitForBroker`. Without an outbox, events emitted before the connection is up fail with
   * BRIDGE_UNAVAILABLE, as offline.
   */
  connectInBackground?: boolean
}

/** A device's runtime: hosts services on a bridge and calls others. */
export interface Runtime {
  readonly deviceId: string
  /**
   * Subscribes, connects and announces the services. Starts offline when the broker is
   * unreachable (the bridge keeps trying) unless `waitForBroker` is set; with
   * `connectInBackground`, resolves before the first connection is made.
   * @throws INVALID_CONFIG for missing resources; with `waitForBroker`, BRIDGE_UNAVAILABLE, or
   *   NOT_AUTHORIZED when the broker refuses one of the device's subscriptions (the bridge keeps trying).
   */
  start(opts?: StartOptions): Promise<void>
  /** Typed calls to a contract's commands. */
  client<K extends AnyContract>(contract: K): ContractClient<K>
  /**
   * Calls a command by name. @throws NO_HANDLER (no device declares the service or command),
   * SERVICE_UNREACHABLE (declared, but no instance is live just now; retryable), VALIDATION_FAILED,
   * TIMEOUT, INTERNAL, BRIDGE_UNAVAILABLE (this device is not connected)
   */
  invoke(target: InvokeTarget, payload: unknown, opts?: InvokeOptions): Promise<unknown>
  /**
   * A queue of a service this runtime hosts: enqueue, inspect, redrive, purge, pause, cancel.
   * @throws NO_HANDLER when the service is not hosted here or declares no such queue
   */
  queue<K extends AnyContract, Q extends keyof K['queues'] & string>(contract: K, queue: Q): QueueHandle<K['queues'][Q]>
  /** Live devices and their services, as presence told; also remembers devices that went away. */
  readonly directory: Directory
  stats(): RuntimeStatsReport
  /** Stops taking work, lets running handlers finish (up to `drainMs`), then closes the bridge. Idempotent. */
  stop(opts?: { drainMs?: number }): Promise<void>
}
