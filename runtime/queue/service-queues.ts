import type { Logger } from 'pino'
import { isJobDecision, resultEventNames, type JobDecision, type QueueSpec, type ResultKind } from '../contract/queue.js'
import type { BindingSpec, BoundEvent, EnqueueOptions, JobRef } from '../contract/service.js'
import { ErrorCode, OutpostError, errorMessage, isOutpostError, toWireError } from '../errors.js'
import { createLogLimiter, type LogLimiter } from '../log-limiter.js'
import { nodeCrypto } from '../lazy-builtin.js'
import type { Clock } from '../ports/clock.js'
import type { OutboxStream } from '../ports/outbox.js'
import type { EnqueueInput, Job, QueueStore } from '../ports/queue-store.js'
import { safeParse } from '../service/compiled-schema.js'
import type { ContextDeps } from '../service/handler-context.js'
import type { HostedService } from '../service/hosted-service.js'
import { toValidationIssues, validate } from '../service/validation.js'
import type { Envelope } from '../wire/envelope.js'
import { valueBytes } from '../wire/value-bytes.js'
import { JobContext } from './job-context.js'
import { createQueueOps, type QueueHandle } from './queue-handle.js'
import { createQueueRunner, type QueueRunner, type RunOutcome, type RunningJob, type RunnerQueue } from './queue-runner.js'
import { queuePolicy, type QueuePolicy } from './retry-policy.js'
import { leaveUnacknowledged } from '../ports/bridge.js'

/** Longest `delayMs` an enqueue takes: ten years. */
const MAX_DELAY_MS = 10 * 365 * 24 * 3_600_000
/** Latest `runAt` an enqueue takes: the last time a Date can hold. */
const MAX_TIME_MS = 8.64e15

/**
 * Bounds of the dead letters kept from events that arrive over the broker and cannot become
 * jobs (they fail the binding's or the queue's schema). Such input comes from whoever can
 * publish on the broker, so what it may add to the device database is bounded.
 */
export interface InboundDeadLetterLimits {
  /** An invalid inbound event is kept only while its queue holds fewer dead letters than this (default 1000). */
  maxPerQueue?: number
  /** A payload larger than this (CBOR bytes, default 4096) is kept as `{truncated, bytes, sha256}` instead. */
  maxPayloadBytes?: number
}

/** What the queues of a runtime need from it. */
export interface ServiceQueuesDeps {
  services: HostedService[]
  store: QueueStore
  clock: Clock
  log: Logger
  counters: {
    eventsBound: number; eventsRejected: number; duplicateEvents: number
    eventsNotStored: number; deadLettersNotKept: number; deadLettersDigested: number
  }
  /** Where trouble caused by a frame is logged, at a bounded rate. */
  rejections: LogLimiter
  inboundDeadLetters?: InboundDeadLetterLimits
  stopping(): boolean
  /** What workers' contexts reach (the runtime's core and rooms). */
  contexts: ContextDeps
  /** Stores a result event of `svc` for delivery, in `stream`. @throws when it cannot be stored */
  result(svc: HostedService, event: string, payload: Record<string, unknown>, job: Job, stream: OutboxStream): void
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
  onBound(svc: HostedService, name: string, b: BindingSpec): (msg: { envelope: Envelope }) => void | Promise<void>
  /** A binding fed by this runtime's own events, inside the transaction that stores the event. */
  bindLocally(svc: HostedService, name: string, b: BindingSpec): (env: Envelope) => void
  /** A hosted service's queue, for enqueueing and operations. @throws NO_HANDLER */
  handle(svc: HostedService, queue: string): QueueHandle
}

/** Tries of a store that is busy (another process writing) before an inbound event is dropped. */
const STORE_RETRIES = 5
/** Longest reason kept with a dead letter (a validation message names paths, which come from the input). */
const MAX_REASON_CHARS = 1_024
/** Longest correlation id or trace context kept with a dead letter from inbound input. */
const MAX_ID_CHARS = 128

/** A store error worth waiting out: another writer holds the database (SQLITE_BUSY, SQLITE_LOCKED and their extended codes). */
function isBusy(err: unknown): boolean {
  if (isOutpostError(err, ErrorCode.STORE_BUSY) || isOutpostError(err, ErrorCode.STORE_LOCKED)) return true
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' && (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED'))
}

/** Whether a worker returned something `await` would wait for. */
const isThenable = (r: unknown): r is PromiseLike<unknown> =>
  r !== null && (typeof r === 'object' || typeof r === 'function') && typeof (r as { then?: unknown }).then === 'function'

const decided = (d: JobDecision): RunOutcome =>
  d.decision === 'fail'
    ? { kind: 'fail', error: { code: ErrorCode.JOB_FAILED, message: d.reason } }
    : { kind: 'retry', error: { code: ErrorCode.JOB_RETRY, message: d.reason }, delayMs: d.delayMs }

/** Binds the services' declared queues to a store and runs their workers. */
/** Failures of the link a worker meets at every attempt while it lasts (see workerFailed). */
const TRANSIENT: ReadonlySet<string> = new Set([ErrorCode.BRIDGE_UNAVAILABLE, ErrorCode.SERVICE_UNREACHABLE, ErrorCode.TIMEOUT])

export function createServiceQueues(deps: ServiceQueuesDeps): ServiceQueues {
  const { store, clock, counters, childTrace } = deps
  const workerTrouble = createLogLimiter(deps.log, { clock })
  /** A queue's name in the store: queues of different services on one device never mix. */
  const queueKey = (svc: HostedService, queue: string): string => `${svc.def.contract.name}/${queue}`
  const policies = new Map<string, QueuePolicy>()
  const resultSinks = new Map<string, (kind: ResultKind, payload: Record<string, unknown>, job: Job) => void>()

  const specOf = (svc: HostedService, queue: string): QueueSpec => {
    const spec = svc.def.contract.queues[queue]
    if (spec === undefined) throw new OutpostError(ErrorCode.NO_HANDLER, `service ${svc.def.contract.name} declares no queue "${queue}"`)
    return spec
  }

  /**
   * Runs one attempt: payload checked, worker called, result checked; never throws or rejects.
   * A worker that returns a value (not a promise) is settled at once, with no promise made: most
   * short jobs do, and the promises and microtasks of the async path cost them 4–6 % of their
   * CPU in the queue bench (test/bench/RESULTS.md, session 19).
   */
  const runJob = (svc: HostedService, name: string, spec: QueueSpec, policy: QueuePolicy, running: RunningJob): RunOutcome | Promise<RunOutcome> => {
    const parsed = safeParse(spec.payload, running.job.payload)
    if (!parsed.success) {
      const issues = toValidationIssues(parsed.issues)
      return { kind: 'fail', reason: 'invalid', error: { code: ErrorCode.VALIDATION_FAILED, message: `payload of job ${running.job.id} is invalid: ${issues.map((i) => i.message).join('; ')}` } }
    }
    const ctx = new JobContext(deps.contexts, svc, running, policy, spec.progress)
    let r: unknown
    let later: boolean
    try {
      r = (svc.def.workers[name] as (p: unknown, c: unknown) => unknown)(parsed.output, ctx)
      later = isThenable(r) // inside: reading `then` may throw
    } catch (err) {
      return workerFailed(err, ctx)
    }
    if (!later) return workerReturned(r, spec, ctx)
    return Promise.resolve(r).then(
      (value) => workerReturned(value, spec, ctx),
      (err: unknown) => workerFailed(err, ctx),
    )
  }
  /** What a worker's return value (its promise's, for an async worker) comes to. */
  const workerReturned = (r: unknown, spec: QueueSpec, ctx: JobContext): RunOutcome => {
    try {
      if (isJobDecision(r)) return decided(r)
      const checked = safeParse(spec.result, r)
      if (checked.success) return { kind: 'completed', output: checked.output }
      ctx.log.error({ issues: toValidationIssues(checked.issues) }, 'worker returned a result that fails its schema')
    } catch (err) {
      // A getter in the result that throws as it is checked.
      return workerFailed(err, ctx)
    }
    return { kind: 'retry', error: { code: ErrorCode.INTERNAL, message: 'internal error' } }
  }
  /** What a worker's throw (its promise's rejection) comes to. */
  const workerFailed = (err: unknown, ctx: JobContext): RunOutcome => {
    try {
      if (isJobDecision(err)) return decided(err)
      const wire = toWireError(err)
      if (wire.code === ErrorCode.INTERNAL) ctx.log.error({ err }, 'worker failed')
      // A failure of the link (the broker away, a service unreachable, a timeout) comes again at
      // every attempt of every job while it lasts: a line per queue and code a minute, with counts
      // (167,000 lines in 150 s offline before), on a limiter of its own (not the one for frames
      // from other devices). Each attempt still has its `failed` event.
      else if (!TRANSIENT.has(wire.code)) ctx.log.warn({ code: wire.code }, wire.message)
      else {
        const j = ctx.job as { id: string; queue: string; attempt: number }
        workerTrouble.warn(`${j.queue}:${wire.code}`, { queue: j.queue, jobId: j.id, attempt: j.attempt, code: wire.code }, wire.message)
      }
      return { kind: 'retry', error: wire }
    } catch {
      // A thrown value that throws at every look (a Proxy): what it says stays inside, like any
      // other internal error's message.
      ctx.log.error({ thrown: typeof err }, 'worker failed with a value that cannot be read')
      return { kind: 'retry', error: { code: ErrorCode.INTERNAL, message: 'internal error' } }
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
        const events = resultEventNames(name)
        // Progress goes with the events; an outcome has a stream of its own (ports/outbox.ts).
        const result = (kind: ResultKind, payload: Record<string, unknown>, job: Job): void => deps.result(svc, events[kind], payload, job, kind === 'completed' || kind === 'dead' ? 'results' : 'events')
        resultSinks.set(key, result)
        return { key, name, policy, reportsProgress: spec.progress !== undefined && policy.results !== 'none', run: (running) => runJob(svc, name, spec, policy, running), result }
      }),
    ),
  })

  /**
   * An option of the wrong kind is BAD_ARGUMENT here: stored, `runAt: 'tomorrow'` was a job
   * delayed for ever that `outpost jobs status` could not show, a NaN priority a STORE_FAILED
   * that blamed the disk.
   */
  const checkOptions = (o: EnqueueOptions, where: string): void => {
    const bad = (what: string, expected: string, got: unknown): OutpostError =>
      new OutpostError(ErrorCode.BAD_ARGUMENT, `${where}: ${what} ${typeof got === 'number' ? String(got) : JSON.stringify(String(got)).slice(0, 64)} is not ${expected}`)
    if (o.priority !== undefined && !(typeof o.priority === 'number' && Number.isFinite(o.priority))) throw bad('priority', 'a number', o.priority)
    if (o.delayMs !== undefined && !(typeof o.delayMs === 'number' && o.delayMs >= 0 && o.delayMs <= MAX_DELAY_MS)) throw bad('delayMs', `a number of ms from 0 to ${MAX_DELAY_MS} (ten years)`, o.delayMs)
    if (o.runAt !== undefined && !(typeof o.runAt === 'number' && o.runAt >= 0 && o.runAt <= MAX_TIME_MS)) throw bad('runAt', 'a time in epoch ms', o.runAt)
    for (const k of ['idempotencyKey', 'correlationId'] as const) if (o[k] !== undefined && typeof o[k] !== 'string') throw bad(k, 'a string', o[k])
  }

  const enqueue = (svc: HostedService, queue: string, items: { payload: unknown; opts?: EnqueueOptions }[], parent?: Envelope): JobRef[] => {
    const spec = specOf(svc, queue)
    const key = queueKey(svc, queue)
    const policy = policies.get(key)!
    const at = clock.now()
    // A job started by a command correlates with it; one started by an event (or a job) with what that carried.
    const corr = parent === undefined ? undefined : parent.kind === 'command' ? parent.id : (parent.corr ?? parent.id)
    const trace = childTrace(parent?.traceparent)
    const inputs = items.map(({ payload, opts: o = {} }): EnqueueInput => {
      checkOptions(o, `enqueue on queue ${svc.def.contract.name}.${queue}`)
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
      input.invalid = errorMessage(err).slice(0, MAX_REASON_CHARS)
      counters.eventsRejected++
      deps.rejections.warn(`binding-invalid:${svc.def.contract.name}/${bindingName}`, { service: svc.def.contract.name, binding: bindingName, msgId: env.id, err: input.invalid }, 'event cannot become a job; kept in the dead letters within their budget')
    }
    return input
  }

  // Dead letters from inbound input: how many each queue holds (read from the store at most
  // once a minute, counted here in between), so a flood of invalid events costs no query each.
  const maxDeadPerQueue = deps.inboundDeadLetters?.maxPerQueue ?? 1_000
  const maxDeadPayloadBytes = deps.inboundDeadLetters?.maxPayloadBytes ?? 4_096
  const deadCounts = new Map<string, { dead: number; readAt: number }>()
  /** Shapes an invalid inbound event into a dead letter within the budget; false when it is not kept. */
  const withinDeadBudget = (input: EnqueueInput): boolean => {
    const at = clock.now()
    let c = deadCounts.get(input.queue)
    if (c === undefined || at - c.readAt >= 60_000 || at < c.readAt) {
      c = { dead: store.metrics(input.queue, at).dead, readAt: at }
      deadCounts.set(input.queue, c)
    }
    if (c.dead >= maxDeadPerQueue) {
      counters.deadLettersNotKept++
      deps.rejections.warn(`dead-letters-full:${input.queue}`, { queue: input.queue, limit: maxDeadPerQueue, msgId: input.idempotencyKey }, 'invalid event not kept: its queue holds as many dead letters as inbound input may leave')
      return false
    }
    // Fields of the envelope that go into the row as they came are bounded too.
    if (input.correlationId !== undefined && input.correlationId.length > MAX_ID_CHARS) delete input.correlationId
    if (input.traceparent !== undefined && input.traceparent.length > MAX_ID_CHARS) delete input.traceparent
    const bytes = valueBytes(input.payload)
    if (bytes.length > maxDeadPayloadBytes) {
      input.payload = { truncated: true, bytes: bytes.length, sha256: nodeCrypto().createHash('sha256').update(bytes).digest('hex') }
      counters.deadLettersDigested++
    }
    c.dead++
    return true
  }

  /**
   * Stores the job an event becomes; the event is acknowledged once that commits. Nothing may
   * hold the inbound stream (MQTT.js hands over one message at a time): a busy store (another
   * writer) is tried again a few times, `STORE_RETRIES` over about 6 s; anything else, and a
   * store still busy after that, is counted (eventsNotStored), logged at a bounded rate, and the
   * event acknowledged and dropped. At stop the acknowledgement of a busy retry is never sent,
   * so the broker delivers the event again to the next start.
   */
  const storeBound = (svc: HostedService, input: EnqueueInput, attempt = 0): void | Promise<void> => {
    try {
      const { created } = store.enqueue(input, clock.now())
      if (!created) counters.duplicateEvents++
      else {
        counters.eventsBound++
        runner.kick(input.queue)
      }
    } catch (err) {
      const code = (err as { code?: unknown } | null)?.code
      const fields = { service: svc.def.contract.name, queue: input.queue, msgId: input.idempotencyKey, code, err: errorMessage(err) }
      if (isBusy(err) && attempt < STORE_RETRIES) {
        deps.rejections.warn(`event-store-busy:${input.queue}`, fields, 'event not stored as a job yet (database busy); trying again')
        return new Promise<void>((resolve) => setTimeout(resolve, 200 * 2 ** attempt)).then(() =>
          deps.stopping() ? new Promise<void>(() => undefined) : storeBound(svc, input, attempt + 1),
        )
      }
      if (input.invalid !== undefined) deadCounts.delete(input.queue) // read the count again next time
      counters.eventsNotStored++
      deps.rejections.error(`event-not-stored:${input.queue}`, fields, 'event not stored as a job; acknowledged and dropped')
    }
  }

  const handles = new Map<string, QueueHandle>()

  return {
    runner,
    enqueue,
    onBound: (svc, name, b) => (msg) => {
      const env = msg.envelope
      if (env.kind !== 'event') return
      // Stopping: no job made, and not acknowledged either, so the broker sends it again to the next start.
      if (deps.stopping()) return leaveUnacknowledged()
      const input = boundJob(svc, name, b, env)
      try {
        if (input.invalid !== undefined && !withinDeadBudget(input)) return
      } catch (err) {
        // The budget could not be read or the payload not measured: nothing of it is kept.
        counters.eventsNotStored++
        deps.rejections.error(`event-not-stored:${input.queue}`, { queue: input.queue, msgId: input.idempotencyKey, err: errorMessage(err) }, 'event not stored as a job; acknowledged and dropped')
        return
      }
      return storeBound(svc, input)
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
        const ops = createQueueOps(store, key, () => clock.now(), {
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
            const job = store.transaction.run(() => ops.cancel(id))
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
