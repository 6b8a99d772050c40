import { safeParse } from './compiled-schema.js'
import type { Logger } from 'pino'
import { isJobDecision, type JobDecision, type QueueSpec } from '../contract/queue.js'
import type { BindingSpec, BoundEvent, EnqueueOptions, JobRef } from '../contract/service.js'
import { ErrorCode, OutpostError, toWireError } from '../errors.js'
import type { Clock } from '../ports/clock.js'
import type { InboundMessage } from '../ports/bridge.js'
import type { EnqueueInput, Job, QueueStore } from '../ports/queue-store.js'
import { createQueueOps, type QueueHandle } from '../queue/queue-handle.js'
import { createQueueRunner, type QueueRunner, type ResultKind, type RunOutcome, type RunningJob, type RunnerQueue } from '../queue/queue-runner.js'
import { queuePolicy, type QueuePolicy } from '../queue/retry-policy.js'
import type { Envelope } from '../wire/envelope.js'
import type { HostedService } from './hosted-service.js'
import { toValidationIssues, validate } from './validation.js'

/** What the queues of a runtime need from it. */
export interface ServiceQueuesDeps {
  services: HostedService[]
  store: QueueStore
  clock: Clock
  log: Logger
  counters: { eventsBound: number; eventsRejected: number; duplicateEvents: number }
  stopping(): boolean
  /** The context a worker gets. */
  workerContext(svc: HostedService, running: RunningJob, policy: QueuePolicy, progress: QueueSpec['progress']): { log: Logger }
  /** Stores a result event of `svc` for delivery. @throws when it cannot be stored */
  result(svc: HostedService, event: string, payload: Record<string, unknown>, job: Job): void
  /** Settlements (and their result events) were committed. */
  afterCommit(): void
  childTrace(traceparent: string | undefined): string | undefined
  pollMs?: number
}

/** The durable queues of one runtime: enqueue, workers, bindings and operator handles. */
export interface ServiceQueues {
  readonly runner: QueueRunner
  /** Validates and stores jobs of `svc`'s queue in one commit. @throws VALIDATION_FAILED, NO_HANDLER */
  enqueue(svc: HostedService, queue: string, items: { payload: unknown; opts?: EnqueueOptions }[], parent?: Envelope): JobRef[]
  /** Handler of a binding's broker subscription: resolves once the job is committed. */
  onBound(svc: HostedService, name: string, b: BindingSpec): (msg: InboundMessage) => void | Promise<void>
  /** A binding fed by this runtime's own events, inside the transaction that stores the event. */
  bindLocally(svc: HostedService, name: string, b: BindingSpec): (env: Envelope) => void
  /** A hosted service's queue, for enqueueing and operations. @throws NO_HANDLER */
  handle(svc: HostedService, queue: string): QueueHandle
}

const decided = (d: JobDecision): RunOutcome =>
  d.decision === 'fail'
    ? { kind: 'fail', error: { code: ErrorCode.JOB_FAILED, message: d.reason } }
    : { kind: 'retry', error: { code: ErrorCode.JOB_RETRY, message: d.reason }, delayMs: d.delayMs }

/** Binds the services' declared queues to a store and runs their workers. */
export function createServiceQueues(deps: ServiceQueuesDeps): ServiceQueues {
  const { store, clock, counters, childTrace } = deps
  /** A queue's name in the store: queues of different services on one device never mix. */
  const queueKey = (svc: HostedService, queue: string): string => `${svc.def.contract.name}/${queue}`
  const policies = new Map<string, QueuePolicy>()
  const resultSinks = new Map<string, (kind: ResultKind, payload: Record<string, unknown>, job: Job) => void>()

  const specOf = (svc: HostedService, queue: string): QueueSpec => {
    const spec = svc.def.contract.queues[queue]
    if (spec === undefined) throw new OutpostError(ErrorCode.NO_HANDLER, `service ${svc.def.contract.name} declares no queue "${queue}"`)
    return spec
  }

  /** Runs one attempt: payload checked, worker called, result checked; never rejects. */
  const runJob = async (svc: HostedService, name: string, spec: QueueSpec, policy: QueuePolicy, running: RunningJob): Promise<RunOutcome> => {
    const parsed = safeParse(spec.payload, running.job.payload)
    if (!parsed.success) {
      const issues = toValidationIssues(parsed.issues)
      return { kind: 'fail', reason: 'invalid', error: { code: ErrorCode.VALIDATION_FAILED, message: `payload of job ${running.job.id} is invalid: ${issues.map((i) => i.message).join('; ')}` } }
    }
    const ctx = deps.workerContext(svc, running, policy, spec.progress)
    try {
      const r = await (svc.def.workers[name] as (p: unknown, c: unknown) => unknown)(parsed.output, ctx)
      if (isJobDecision(r)) return decided(r)
      const checked = safeParse(spec.result, r)
      if (checked.success) return { kind: 'completed', output: checked.output }
      ctx.log.error({ issues: toValidationIssues(checked.issues) }, 'worker returned a result that fails its schema')
      return { kind: 'retry', error: { code: ErrorCode.INTERNAL, message: 'internal error' } }
    } catch (err) {
      if (isJobDecision(err)) return decided(err)
      const wire = toWireError(err)
      if (wire.code === ErrorCode.INTERNAL) ctx.log.error({ err }, 'worker failed')
      else ctx.log.warn({ code: wire.code }, wire.message)
      return { kind: 'retry', error: wire }
    }
  }

  const runner = createQueueRunner({
    store,
    clock,
    log: deps.log,
    afterCommit: deps.afterCommit,
    pollMs: deps.pollMs,
    queues: deps.services.flatMap((svc) =>
      Object.entries(svc.def.contract.queues).map(([name, spec]): RunnerQueue => {
        const key = queueKey(svc, name)
        const policy = queuePolicy(spec)
        policies.set(key, policy)
        const events: Record<ResultKind, string> = { completed: `${name}.completed`, failed: `${name}.failed`, dead: `${name}.dead`, progress: `${name}.progress` }
        const result = (kind: ResultKind, payload: Record<string, unknown>, job: Job): void => deps.result(svc, events[kind], payload, job)
        resultSinks.set(key, result)
        return { key, name, policy, reportsProgress: spec.progress !== undefined && policy.results !== 'none', run: (running) => runJob(svc, name, spec, policy, running), result }
      }),
    ),
  })

  const enqueue = (svc: HostedService, queue: string, items: { payload: unknown; opts?: EnqueueOptions }[], parent?: Envelope): JobRef[] => {
    const spec = specOf(svc, queue)
    const key = queueKey(svc, queue)
    const policy = policies.get(key)!
    const at = clock.now()
    // A job started by a command correlates with it; one started by an event (or a job) with what that carried.
    const corr = parent === undefined ? undefined : parent.kind === 'command' ? parent.id : (parent.corr ?? parent.id)
    const trace = childTrace(parent?.traceparent)
    const inputs = items.map(({ payload, opts: o = {} }): EnqueueInput => {
      // Checked now so the caller hears of bad input; stored as given and parsed again when it runs.
      validate(spec.payload, payload, `payload of queue ${svc.def.contract.name}.${queue}`)
      const input: EnqueueInput = { queue: key, payload, priority: o.priority ?? policy.priority }
      if (o.idempotencyKey !== undefined) input.idempotencyKey = o.idempotencyKey
      const runAt = o.runAt ?? (o.delayMs === undefined ? undefined : at + o.delayMs)
      if (runAt !== undefined) input.runAt = runAt
      const c = o.correlationId ?? corr
      if (c !== undefined) input.correlationId = c
      if (trace !== undefined) input.traceparent = trace
      return input
    })
    const out = inputs.length === 1 ? [store.enqueue(inputs[0]!, at)] : store.enqueueMany(inputs, at)
    if (out.some((o) => o.created)) runner.kick(key)
    return out.map((o) => ({ id: o.job.id, created: o.created }))
  }

  /** The job an event becomes (stored in the dead letters, with the reason, when it cannot run). */
  const boundJob = (svc: HostedService, bindingName: string, b: BindingSpec, env: Envelope): EnqueueInput => {
    const key = queueKey(svc, b.queue)
    const input: EnqueueInput = { queue: key, payload: env.payload, idempotencyKey: `${env.src}/${env.id}`, priority: policies.get(key)!.priority, correlationId: env.corr ?? env.id }
    const trace = childTrace(env.traceparent)
    if (trace !== undefined) input.traceparent = trace
    try {
      const event = validate(b.schema, env.payload, `event ${env.service}.${env.name} from ${env.src}`)
      const meta: BoundEvent = { service: env.service!, version: env.version!, name: env.name!, device: env.src, id: env.id, correlationId: env.corr }
      if (b.key !== undefined) input.idempotencyKey = (b.key as (p: unknown, e: BoundEvent) => string)(event, meta)
      const payload = b.payload === undefined ? event : (b.payload as (p: unknown, e: BoundEvent) => unknown)(event, meta)
      validate(specOf(svc, b.queue).payload, payload, `job payload from binding "${bindingName}"`)
      input.payload = payload
    } catch (err) {
      // It can never run, but it is not lost: it waits in the dead letters, inspectable.
      input.invalid = (err as Error).message
      counters.eventsRejected++
      svc.log.warn({ binding: bindingName, msgId: env.id, err: input.invalid }, 'event cannot become a job; stored in the dead letters')
    }
    return input
  }

  /** Stores the job an event becomes; until that commits the event is not acknowledged. */
  const storeBound = (svc: HostedService, input: EnqueueInput): void | Promise<void> => {
    try {
      const { created } = store.enqueue(input, clock.now())
      if (!created) counters.duplicateEvents++
      else {
        counters.eventsBound++
        runner.kick(input.queue)
      }
    } catch (err) {
      // Not committed: the acknowledgement is held back (the broker keeps the event) and the
      // store is tried again; at stop it is never sent, so the broker delivers the event again.
      svc.log.error({ msgId: input.idempotencyKey, err: (err as Error).message }, 'event not stored as a job; trying again')
      return new Promise<void>((resolve) => setTimeout(resolve, 1_000)).then(() => (deps.stopping() ? new Promise<void>(() => undefined) : storeBound(svc, input)))
    }
  }

  const handles = new Map<string, QueueHandle>()

  return {
    runner,
    enqueue,
    onBound: (svc, name, b) => (msg) => {
      const env = msg.envelope
      if (env.kind !== 'event' || deps.stopping()) return
      return storeBound(svc, boundJob(svc, name, b, env))
    },
    bindLocally: (svc, name, b) => (env) => {
      const input = boundJob(svc, name, b, env)
      if (!store.enqueue(input, clock.now()).created) return
      counters.eventsBound++
      runner.kick(input.queue)
    },
    handle(svc, queue) {
      specOf(svc, queue)
      const key = queueKey(svc, queue)
      let h = handles.get(key)
      if (h === undefined) {
        const ops = createQueueOps(store, key, clock.now, {
          wake: () => runner.kick(key),
          cancelled: (job) => {
            runner.cancelled(job.id)
            const error = { code: ErrorCode.CANCELLED, message: 'cancelled' }
            if (policies.get(key)!.results !== 'none') resultSinks.get(key)!('dead', { jobId: job.id, queue, attempt: job.attempt, reason: 'cancelled', error }, job)
          },
        })
        h = {
          ...ops,
          cancel: (id) => {
            // The cancellation and its `dead` result event commit together.
            const job = store.transaction(() => ops.cancel(id))
            deps.afterCommit()
            return job
          },
          enqueue: (payload, o) => enqueue(svc, queue, [{ payload, opts: o }])[0]!,
          enqueueMany: (items) => enqueue(svc, queue, items),
        }
        handles.set(key, h)
      }
      return h
    },
  }
}
