/**
 * The composition root of a device's runtime: builds the shared core and the rooms, and wires
 * them together, on the stores it is given (runtime.ts gives memory stores where none is). Each
 * room is its own file:
 * - runtime-core.ts: what every room shares (the link, identity, time, logs, counters, hosted services)
 * - handler-context.ts: the `ctx` handlers and workers get
 * - calling.ts: invoke and clients (in process, or over the link through the directory)
 * - serving.ts: commands of hosted services (execute, replies, inbox)
 * - events.ts: emitting through the outbox, local receivers, subscriptions
 * - ../queue/service-queues.ts: durable queues, workers (with their job context) and bindings
 * - lifecycle.ts: start and stop, presence, status, stats
 */
import type { AnyContract } from '../contract/contract.js'
import type { EnqueueOptions, InvokeOptions, InvokeTarget, Occurrence } from '../contract/service.js'
import { ErrorCode, OutpostError } from '../errors.js'
import { createScheduler } from '../schedule/scheduler.js'
import type { Envelope } from '../wire/envelope.js'
import { createCalling, type Calling, type Parent } from './calling.js'
import { createDirectory } from './directory.js'
import { createEvents } from './events.js'
import type { ContextDeps } from './handler-context.js'
import type { HostedService } from './hosted-service.js'
import { createLifecycle } from './lifecycle.js'
import type { Runtime, RuntimeWithStoresOptions } from './runtime-api.js'
import { childTrace, createRuntimeCore } from './runtime-core.js'
import { createServing } from './serving.js'
import { createServiceQueues, type ServiceQueues } from '../queue/service-queues.js'

/**
 * Creates a runtime for one device on the stores it is given. createRuntime is this with memory
 * stores for those not given; a device that gives all three (a SQLite device) calls this one,
 * and its bundle carries no memory store. @throws INVALID_CONFIG when a service is registered twice
 */
export function createRuntimeWithStores(opts: RuntimeWithStoresOptions): Runtime {
  const core = createRuntimeCore(opts)
  const { deviceId, clock, hostedBy, log, rejections } = core
  const outbox = opts.outbox
  const queueStore = opts.queueStore
  // Presence is untrusted: what it declares beyond the directory's bounds is refused, counted and logged at a bounded rate.
  const directory = createDirectory({
    clock,
    onRefused: (what, device) => rejections.warn(`presence-${what}-limit`, { device }, `presence of ${device} declares more than the directory keeps (${what}s); the rest is ignored`),
  })

  // Handlers' contexts call, emit and enqueue through the rooms built below.
  const contexts: ContextDeps = {
    core,
    invoke: (target: InvokeTarget, payload: unknown, o: InvokeOptions | undefined, parent: Parent) => calling.invoke(target, payload, o, parent),
    client: <K extends AnyContract>(contract: K, parent: Parent) => calling.clientFor(contract, parent),
    emit: (svc: HostedService, event: string, payload: unknown, parent: Envelope) => events.emit(svc, event, payload, parent),
    enqueue: (svc: HostedService, queue: string, payload: unknown, o: EnqueueOptions | undefined, parent: Envelope) => queues.enqueue(svc, queue, [{ payload, opts: o }], parent)[0]!,
  }
  const serving = createServing({ core, contexts, inbox: opts.inbox, clockSkewMs: opts.clockSkewMs ?? 2_000 })
  const calling: Calling = createCalling({
    core,
    directory,
    execute: serving.execute,
    defaultTimeoutMs: opts.defaultTimeoutMs ?? 5_000,
    discoveryWaitMs: opts.discoveryWaitMs ?? 1_000,
  })
  const events = createEvents({ core, contexts, outbox, outboxWindow: opts.outboxWindow, queueStore })
  const scheduler = createScheduler({
    clock,
    store: core.stateStore,
    log,
    jobs: [...core.hosted.values()].flatMap((svc) =>
      Object.entries(svc.def.schedules).map(([name, spec]) => ({
        service: svc.def.contract.name,
        name,
        spec,
        // The occurrence id travels as the event's correlation id: receivers can dedupe by it.
        fire: (occ: Occurrence) => events.emit(svc, spec.event, spec.payload(occ), undefined, occ.id),
      })),
    ),
  })
  const queues: ServiceQueues = createServiceQueues({
    services: [...core.hosted.values()],
    store: queueStore,
    clock,
    log,
    counters: core.counters,
    rejections,
    inboundDeadLetters: opts.inboundDeadLetters,
    stopping: () => core.stopping,
    pollMs: opts.queuePollMs,
    childTrace,
    afterCommit: events.afterCommit,
    contexts,
    result: events.publishResult,
  })
  const lifecycle = createLifecycle({
    core,
    directory,
    serving,
    events,
    queues,
    runner: queues.runner,
    scheduler,
    outbox,
    inboxSize: opts.inboxSize ?? 10_000,
    jobsOnStop: opts.jobsOnStop ?? 'release',
  })

  return {
    deviceId,
    directory,
    start: lifecycle.start,
    client: (contract) => calling.clientFor(contract),
    invoke: (target, payload, o) => calling.invoke(target, payload, o),
    queue: (contract, queue) => {
      const svc = hostedBy.get(contract.name)?.get(contract.version)
      if (svc === undefined) throw new OutpostError(ErrorCode.NO_HANDLER, `service ${contract.name}@${contract.version} is not hosted by ${deviceId}`)
      return queues.handle(svc, queue) as never
    },
    stats: lifecycle.stats,
    stop: lifecycle.stop,
  }
}
