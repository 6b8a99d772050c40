import type * as v from 'valibot'
import type { Logger } from 'pino'
import { ErrorCode, OutpostError } from '../errors.js'
import type { AnyContract } from './contract.js'
import type { Schema } from './schema.js'
import type { Resource, ResourcesOf } from './resource.js'
import type { JobDecision, QueueSpec } from './queue.js'
import { every, scheduleSpec, type MisfirePolicy, type Occurrence, type ScheduleSpec, type Timing } from './schedule-spec.js'

// Declared in schedule-spec.ts; kept importable from here, where they were declared before.
export type { MisfirePolicy, Occurrence, ScheduleSpec, Timing } from './schedule-spec.js'

/** A service's key-value state on one device. Synchronous: the store is local (SQLite or memory). */
export interface ServiceState<T> {
  /** The value under `key`, or undefined. @throws VALIDATION_FAILED when a stored value no longer fits the schema */
  get(key: string): T | undefined
  /** Stores a value. @throws VALIDATION_FAILED when it does not fit the declared schema */
  set(key: string, value: T): void
  /** Removes a key; true when it existed. */
  delete(key: string): boolean
  /** Entries whose key starts with `prefix` (all when omitted), sorted by key. */
  list(prefix?: string): { key: string; value: T }[]
}

/** Options of one call to another service. */
export interface InvokeOptions {
  /** Send to this device only (otherwise any live instance, preferring this device). */
  device?: string
  /** Give up after this many ms (default: the runtime's, or what is left of the caller's deadline). */
  timeoutMs?: number
  traceparent?: string
}

/** Where a generic `invoke` goes. */
export interface InvokeTarget {
  service: string
  version?: string
  command: string
}

type CommandsOf<K extends AnyContract> = K['commands']
type EventsOf<K extends AnyContract> = K['events']
type QueuesOf<K extends AnyContract> = K['queues']
/** Events a handler may emit: the declared ones; result events (`<queue>.<outcome>`) come from the runtime. */
type EmittedEventsOf<K extends AnyContract> = Exclude<keyof EventsOf<K> & string, `${string}.${string}`>

/** Options of one enqueue. */
export interface EnqueueOptions {
  /** A second enqueue with the same key on the same queue returns the first job instead. */
  idempotencyKey?: string
  /** Higher runs first (default: the queue's). */
  priority?: number
  /** Not before this many ms from now. */
  delayMs?: number
  /** Not before this time, epoch ms (wins over delayMs). */
  runAt?: number
  /** Carried by the job's result events (default: the correlation id of the handler that enqueues). */
  correlationId?: string
}

/** What an enqueue gave: the job id, and false in `created` when the idempotency key already had a job. */
export interface JobRef {
  id: string
  created: boolean
}

/** Typed calls to one contract's commands: `proxy.read(payload, opts)`. */
export type ContractClient<K extends AnyContract> = {
  [C in keyof CommandsOf<K> & string]: (
    payload: v.InferInput<CommandsOf<K>[C]['payload']>,
    opts?: InvokeOptions,
  ) => Promise<v.InferOutput<CommandsOf<K>[C]['result']>>
}

/** `ctx.service.<name>['<version>'].<command>(…)` for every contract a service declares in `uses`. */
export type ServiceProxy<U extends readonly AnyContract[]> = {
  [K in U[number] as K['name']]: { [Ver in K['version']]: ContractClient<K> }
}

/** What every handler gets. */
export interface HandlerContext<K extends AnyContract, U extends readonly AnyContract[], R, T = unknown> {
  readonly deviceId: string
  /** Id of the message being handled. */
  readonly messageId: string
  readonly traceparent?: string
  /** Epoch ms after which nobody waits for this work. */
  readonly deadline?: number
  /** Aborts at the deadline and on shutdown. */
  readonly signal: AbortSignal
  /** Logger bound to service, handler and message id. */
  readonly log: Logger
  readonly resources: ResourcesOf<R>
  /** This service's key-value state on this device (durable with a SQLite state store), values checked against the declared `state` schema. */
  readonly state: ServiceState<T>
  /** Typed calls to the services named in `uses`. */
  readonly service: ServiceProxy<U>
  /** Emits one of this service's declared events. @throws VALIDATION_FAILED, BRIDGE_UNAVAILABLE, OUTBOX_FULL */
  emit<E extends EmittedEventsOf<K>>(event: E, payload: v.InferInput<EventsOf<K>[E]>): Promise<void>
  /** Calls any service's command by name (untyped). @throws NO_HANDLER, TIMEOUT, VALIDATION_FAILED, … */
  invoke(target: InvokeTarget, payload: unknown, opts?: InvokeOptions): Promise<unknown>
  /**
   * Adds a job to one of this service's queues on this device; committed when it returns.
   * @throws VALIDATION_FAILED, NO_HANDLER (queue not declared), STORE_FAILED
   */
  enqueue<Q extends keyof QueuesOf<K> & string>(queue: Q, payload: v.InferInput<QueuesOf<K>[Q]['payload']>, opts?: EnqueueOptions): JobRef
}

/** The job a worker is running. */
export interface JobInfo {
  readonly id: string
  readonly queue: string
  /** 1 on the first attempt. */
  readonly attempt: number
  readonly maxAttempts: number
  readonly createdAt: number
  readonly correlationId?: string
}

/** Context of a queue worker: the job, its lease and its outcomes. */
export interface WorkerContext<K extends AnyContract, U extends readonly AnyContract[], R, T = unknown, G = unknown> extends HandlerContext<K, U, R, T> {
  readonly job: JobInfo
  /**
   * Extends the lease now (and records `progress`, emitted as `<queue>.progress` when the
   * queue declares it). @returns false when the lease was lost: stop, the result will be ignored.
   * @throws VALIDATION_FAILED when progress does not fit its schema
   */
  heartbeat(progress?: G): boolean
  /** Try again later: after `delayMs`, or the queue's backoff. Counts as a failed attempt. */
  retry(opts?: { delayMs?: number; reason?: string }): JobDecision
  /** Give up now: the job goes to the dead letters with this reason. */
  fail(reason: string): JobDecision
}

/** Context of a command handler: also who called. */
export interface CommandContext<K extends AnyContract, U extends readonly AnyContract[], R, T = unknown> extends HandlerContext<K, U, R, T> {
  readonly command: string
  readonly caller: { device: string; instance: string; principal?: string; tenant?: string }
}

/** Context of a subscription handler: also who emitted. */
export interface EventContext<K extends AnyContract, U extends readonly AnyContract[], R, T = unknown> extends HandlerContext<K, U, R, T> {
  /** Which event this is; `correlationId` is a scheduled occurrence's id, or the command the event was emitted for. */
  readonly event: { service: string; version: string; name: string; device: string; id: string; correlationId?: string }
}

/** Which events a subscription receives and how it reads them. */
export interface SubscriptionSpec {
  readonly service: string
  readonly version: string
  readonly event: string
  readonly device: string
  readonly schema: Schema
  readonly handler: (payload: never, ctx: never) => unknown
}

/** Builds typed subscriptions inside `defineService`. */
export interface SubscriptionBuilder<K extends AnyContract, U extends readonly AnyContract[], R, T = unknown> {
  /** Subscribes to one event of a known contract; the payload type comes from its schema. */
  on<C extends AnyContract, E extends keyof C['events'] & string>(
    from: C,
    event: E,
    handler: (payload: v.InferOutput<C['events'][E]>, ctx: EventContext<K, U, R, T>) => unknown,
    opts?: { device?: string },
  ): SubscriptionSpec
  /** Subscribes by pattern: `*` (or omitted) matches any service, version, event or device. */
  pattern<S extends Schema>(
    sel: { service?: string; version?: string; event?: string; device?: string; schema: S },
    handler: (payload: v.InferOutput<S>, ctx: EventContext<K, U, R, T>) => unknown,
  ): SubscriptionSpec
}

/** Builds typed schedules inside `defineService`. */
export interface ScheduleBuilder<K extends AnyContract> {
  /**
   * Fires on a timing: `cron(pattern, { timezone })` (from 'outpost/contracts') or `every(ms)`.
   * A device bundle carries croner only when a service calls `cron`.
   */
  at<E extends EmittedEventsOf<K>>(
    timing: Timing,
    event: E,
    payload: (occurrence: Occurrence) => v.InferInput<EventsOf<K>[E]>,
    opts?: { misfire?: MisfirePolicy },
  ): ScheduleSpec
  /** Fires every `ms` milliseconds, aligned to multiples of `ms` since the epoch (so ids repeat across restarts): `at(every(ms), …)`. */
  every<E extends EmittedEventsOf<K>>(
    ms: number,
    event: E,
    payload: (occurrence: Occurrence) => v.InferInput<EventsOf<K>[E]>,
    opts?: { misfire?: MisfirePolicy },
  ): ScheduleSpec
  /**
   * @deprecated Cron patterns moved out of the builder, so that a device without one does not
   * carry croner: write `s.at(cron(pattern, { timezone }), event, payload, { misfire })`, with
   * `cron` imported from 'outpost/contracts'. Called, this throws INVALID_CONFIG saying so.
   */
  cron(moved: 'write s.at(cron(pattern), …)'): never
}

/** What an event-to-queue binding tells about the event it turns into a job. */
export interface BoundEvent {
  service: string
  version: string
  name: string
  device: string
  id: string
  correlationId?: string
}

/** An event of any device turned into a job of one of the service's queues. */
export interface BindingSpec {
  readonly service: string
  readonly version: string
  readonly event: string
  readonly device: string
  readonly schema: Schema
  readonly queue: string
  /** The job's idempotency key (default: the event's message id, so a redelivery is the same job). */
  readonly key?: (payload: never, event: BoundEvent) => string
  /** The job's payload (default: the event's payload). */
  readonly payload?: (payload: never, event: BoundEvent) => unknown
}

/** Builds typed event-to-queue bindings inside `defineService`. */
export interface BindingBuilder<K extends AnyContract> {
  /**
   * Every `event` of `from` (from any device, or `device`) becomes exactly one job of `queue`,
   * even when delivered twice; it is acknowledged to the broker only once the job is committed.
   */
  event<C extends AnyContract, E extends keyof C['events'] & string, Q extends keyof QueuesOf<K> & string>(
    from: C,
    event: E,
    queue: Q,
    opts?: {
      device?: string
      key?: (payload: v.InferOutput<C['events'][E]>, event: BoundEvent) => string
      payload?: (payload: v.InferOutput<C['events'][E]>, event: BoundEvent) => v.InferInput<QueuesOf<K>[Q]['payload']>
    },
  ): BindingSpec
}

type ProgressOf<S extends QueueSpec> = S['progress'] extends Schema ? v.InferInput<S['progress']> : never

/** Workers of every queue in the contract, typed from its schemas. */
export type WorkerHandlers<K extends AnyContract, U extends readonly AnyContract[], R, T = unknown> = {
  [Q in keyof QueuesOf<K> & string]: (
    payload: v.InferOutput<QueuesOf<K>[Q]['payload']>,
    ctx: WorkerContext<K, U, R, T, ProgressOf<QueuesOf<K>[Q]>>,
  ) =>
    | v.InferInput<QueuesOf<K>[Q]['result']>
    | JobDecision
    | Promise<v.InferInput<QueuesOf<K>[Q]['result']> | JobDecision>
}

/** One event of a known contract, from any device or the one named: what subscriptions and bindings select. */
function selectEvent(from: AnyContract, event: string, device: string | undefined): { service: string; version: string; event: string; device: string; schema: Schema } {
  return { service: from.name, version: from.version, event, device: device ?? '*', schema: from.events[event] as Schema }
}

/** `workers`: one per declared queue, required when the contract declares any. */
type WorkersOf<K extends AnyContract, U extends readonly AnyContract[], R, T> = [keyof QueuesOf<K>] extends [never]
  ? { workers?: WorkerHandlers<K, U, R, T> }
  : string extends keyof QueuesOf<K> // queues not known (a contract typed loosely): checked at run time
    ? { workers?: WorkerHandlers<K, U, R, T> }
    : { workers: WorkerHandlers<K, U, R, T> }

/** Handlers of every command in the contract, typed from its schemas. */
export type CommandHandlers<K extends AnyContract, U extends readonly AnyContract[], R, T = unknown> = {
  [C in keyof CommandsOf<K> & string]: (
    payload: v.InferOutput<CommandsOf<K>[C]['payload']>,
    ctx: CommandContext<K, U, R, T>,
  ) => v.InferInput<CommandsOf<K>[C]['result']> | Promise<v.InferInput<CommandsOf<K>[C]['result']>>
}

/** A contract bound to its handlers: what a runtime hosts. */
export interface ServiceDefinition<K extends AnyContract = AnyContract> {
  readonly kind: 'service'
  readonly contract: K
  readonly uses: readonly AnyContract[]
  readonly resources: Record<string, Resource<unknown>>
  /** Schema of `ctx.state` values (any value when undefined). */
  readonly state: Schema | undefined
  readonly commands: Record<string, (payload: never, ctx: never) => unknown>
  readonly subscriptions: Record<string, SubscriptionSpec>
  readonly schedules: Record<string, ScheduleSpec>
  readonly workers: Record<string, (payload: never, ctx: never) => unknown>
  readonly bindings: Record<string, BindingSpec>
}

/**
 * Implements a contract: one handler per declared command, optional subscriptions, the
 * contracts it calls (`uses`, for the typed `ctx.service` proxy) and resources it needs.
 * @throws INVALID_CONFIG when a command has no handler.
 */
export function defineService<
  K extends AnyContract,
  const U extends readonly AnyContract[] = [],
  R extends Record<string, Resource<unknown>> = Record<never, Resource<unknown>>,
  ST extends Schema = Schema,
>(
  contract: K,
  impl: {
    uses?: U
    resources?: R
    /** Schema of the values this service keeps in `ctx.state`. */
    state?: ST
    commands: CommandHandlers<K, U, R, v.InferOutput<ST>>
    subscriptions?: (b: SubscriptionBuilder<K, U, R, v.InferOutput<ST>>) => Record<string, SubscriptionSpec>
    /** Schedules that emit this service's events. */
    schedules?: (b: ScheduleBuilder<K>) => Record<string, ScheduleSpec>
    /** Events (of any device) that become jobs of this service's queues. */
    bindings?: (b: BindingBuilder<K>) => Record<string, BindingSpec>
  } & WorkersOf<K, U, R, v.InferOutput<ST>>,
): ServiceDefinition<K> {
  const at = `service ${contract.name}@${contract.version}`
  for (const name of Object.keys(contract.commands)) {
    if (typeof (impl.commands as Record<string, unknown>)[name] !== 'function') {
      throw new OutpostError(ErrorCode.INVALID_CONFIG, `${at} has no handler for command "${name}"`)
    }
  }
  const workers = (impl.workers ?? {}) as Record<string, unknown>
  for (const name of Object.keys(contract.queues)) {
    if (typeof workers[name] !== 'function') throw new OutpostError(ErrorCode.INVALID_CONFIG, `${at} has no worker for queue "${name}"`)
  }
  const bindingBuilder: BindingBuilder<K> = {
    event: (from, event, queue, opts) => ({
      ...selectEvent(from, event, opts?.device),
      queue,
      key: opts?.key as BindingSpec['key'],
      payload: opts?.payload as BindingSpec['payload'],
    }),
  }
  const bindings = impl.bindings?.(bindingBuilder) ?? {}
  for (const [name, b] of Object.entries(bindings)) {
    if (!(b.queue in contract.queues)) throw new OutpostError(ErrorCode.INVALID_CONFIG, `binding "${name}" of ${at} feeds queue "${b.queue}", which the contract does not declare`)
    if (b.schema === undefined) throw new OutpostError(ErrorCode.INVALID_CONFIG, `binding "${name}" of ${at} names event "${b.event}", which ${b.service} does not declare`)
  }
  const builder: SubscriptionBuilder<K, U, R, v.InferOutput<ST>> = {
    on: (from, event, handler, opts) => ({
      ...selectEvent(from, event, opts?.device),
      handler: handler as SubscriptionSpec['handler'],
    }),
    pattern: (sel, handler) => ({
      service: sel.service ?? '*',
      version: sel.version ?? '*',
      event: sel.event ?? '*',
      device: sel.device ?? '*',
      schema: sel.schema,
      handler: handler as SubscriptionSpec['handler'],
    }),
  }
  const schedules: ScheduleBuilder<K> = {
    at: (timing, event, payload, opts) => scheduleSpec(timing, event, payload, opts),
    every: (ms, event, payload, opts) => scheduleSpec(every(ms), event, payload, opts),
    cron: (pattern: unknown) => {
      throw new OutpostError(ErrorCode.INVALID_CONFIG, `s.cron(${JSON.stringify(pattern)}, …) is now s.at(cron(${JSON.stringify(pattern)}, { timezone }), event, payload, { misfire }), with cron imported from 'outpost/contracts'`)
    },
  }
  const declared = impl.schedules?.(schedules) ?? {}
  for (const [name, spec] of Object.entries(declared)) {
    if (!(spec.event in contract.events) || contract.resultEvents.has(spec.event)) {
      throw new OutpostError(ErrorCode.INVALID_CONFIG, `schedule "${name}" of ${contract.name} emits "${spec.event}", which the contract does not declare`)
    }
  }
  return {
    kind: 'service',
    contract,
    schedules: declared,
    uses: impl.uses ?? [],
    resources: impl.resources ?? {},
    state: impl.state,
    commands: impl.commands as ServiceDefinition['commands'],
    subscriptions: impl.subscriptions?.(builder) ?? {},
    workers: workers as ServiceDefinition['workers'],
    bindings,
  }
}
