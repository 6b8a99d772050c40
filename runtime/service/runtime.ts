import { randomBytes } from 'node:crypto'
import { pino, type Logger } from 'pino'
import { safeParse } from './compiled-schema.js'
import type { AnyContract, Schema } from '../contract/contract.js'
import type { ContractClient, EnqueueOptions, InvokeOptions, InvokeTarget, JobRef, ServiceDefinition, ServiceState, SubscriptionSpec } from '../contract/service.js'
import { JobDecision } from '../contract/queue.js'
import type { QueueStore } from '../ports/queue-store.js'
import { createMemoryQueueStore } from '../stores/memory/memory-queue-store.js'
import type { QueueRunStats, RunningJob } from '../queue/queue-runner.js'
import type { QueueHandle } from '../queue/queue-handle.js'
import type { QueuePolicy } from '../queue/retry-policy.js'
import type { StateStore } from '../ports/state-store.js'
import { systemClock, type Clock } from '../ports/clock.js'
import type { Occurrence } from '../contract/service.js'
import { createScheduler, type SchedulerStats } from '../schedule/scheduler.js'
import type { Outbox, OutboxStats } from '../ports/outbox.js'
import type { Inbox } from '../ports/inbox.js'
import { createMemoryInbox } from '../stores/memory/memory-inbox.js'
import { createOutboxPump, type OutboxPump } from '../outbox/outbox-pump.js'
import { createEnvelopeCodec } from '../wire/codec.js'
import { createMemoryStateStore } from '../stores/memory/memory-state-store.js'
import { ErrorCode, OutpostError, fromWireError, toWireError, type WireError } from '../errors.js'
import type { Bridge, BridgeStats, InboundMessage } from '../ports/bridge.js'
import { ENVELOPE_VERSION, type Envelope, type PresencePayload } from '../wire/envelope.js'
import { topicMatches } from '../wire/topics.js'
import { createMessageIdFactory } from '../wire/message-id.js'
import { createDeadlineTracker } from '../bridges/bridge-kit.js'
import { createDirectory, type Directory } from './directory.js'
import { createRecentMap, type RecentMap } from './recent-map.js'
import type { HostedService, ServedCommand } from './hosted-service.js'
import { createServiceQueues, type InboundDeadLetterLimits } from './service-queues.js'
import { createLogLimiter } from '../log-limiter.js'
import { toValidationIssues, validate } from './validation.js'

/** How a runtime is put together; the entry point picks the bridge. */
export interface RuntimeOptions {
  bridge: Bridge
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
  /** Wall clock for envelopes and deadlines, epoch ms (default Date.now). */
  now?: () => number
  /** Time for schedules (default: the system clock); a manual clock lets tests skip ahead. */
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
   * Where the jobs of the services' queues live (default: memory, gone on restart). Give it
   * createSqliteQueueStore on the same device database as the outbox, so a job's completion
   * and its result event commit together.
   */
  queueStore?: QueueStore
  /** How often an idle queue looks for jobs another process added (a redrive from the CLI), ms (default 1000). */
  queuePollMs?: number
  /** At stop, jobs whose workers did not finish within `drainMs` are given back (`release`, default) or left to their lease (`expire`). */
  jobsOnStop?: 'release' | 'expire'
  /** Bounds of the dead letters that invalid events arriving over the broker may leave in a queue. */
  inboundDeadLetters?: InboundDeadLetterLimits
}

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

/** A device's runtime: hosts services on a bridge and calls others. */
export interface Runtime {
  readonly deviceId: string
  /**
   * Subscribes, connects and announces the services. Starts offline when the broker is
   * unreachable (the bridge keeps trying) unless `waitForBroker` is set.
   * @throws INVALID_CONFIG for missing resources; BRIDGE_UNAVAILABLE with `waitForBroker`.
   */
  start(opts?: { waitForBroker?: boolean }): Promise<void>
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
  stats(): RuntimeStats & { schedules: SchedulerStats; outbox?: OutboxStats; queues: Record<string, QueueRunStats> }
  /** Stops taking work, lets running handlers finish (up to `drainMs`), then closes the bridge. Idempotent. */
  stop(opts?: { drainMs?: number }): Promise<void>
}


/** What running a command came to: a result or a wire error. */
type Outcome = { value: unknown; error: undefined } | { value: undefined; error: WireError }

interface Parent {
  deadline?: number
  traceparent?: string
}

/** Creates a runtime for one device. */
export function createRuntime(opts: RuntimeOptions): Runtime {
  const bridge = opts.bridge
  const deviceId = bridge.deviceId
  const inst = bridge.instanceId
  const clock = opts.clock ?? systemClock
  const now = opts.now ?? Date.now
  const ids = createMessageIdFactory(now)
  const baseLog = opts.logger ?? pino({ level: 'silent' })
  const rootLog = baseLog.bindings().device === undefined ? baseLog.child({ device: deviceId }) : baseLog
  const defaultTimeoutMs = opts.defaultTimeoutMs ?? 5_000
  const discoveryWaitMs = opts.discoveryWaitMs ?? 1_000
  const inboxSize = opts.inboxSize ?? 10_000
  const clockSkewMs = opts.clockSkewMs ?? 2_000
  const resources = opts.resources ?? {}
  const stateStore = opts.stateStore ?? createMemoryStateStore()
  const outbox = opts.outbox
  const outboxCodec = outbox === undefined ? undefined : createEnvelopeCodec()
  let pump: OutboxPump | undefined
  /** `ctx.state` of one service: its scope in the store, values checked against its schema both ways. */
  const serviceState = (def: ServiceDefinition): ServiceState<unknown> => {
    const scope = def.contract.name
    const schema = def.state
    const check = (value: unknown, what: string): unknown => (schema === undefined ? value : validate(schema, value, what))
    return {
      get: (key) => {
        const value = stateStore.get(scope, key)
        return value === undefined ? undefined : check(value, `stored state "${key}" of ${scope}`)
      },
      set: (key, value) => stateStore.set(scope, key, check(value, `state "${key}" of ${scope}`)),
      delete: (key) => stateStore.delete(scope, key),
      list: (prefix) => stateStore.list(scope, prefix).map((e) => ({ key: e.key, value: check(e.value, `stored state "${e.key}" of ${scope}`) })),
    }
  }
  const localDeadlines = createDeadlineTracker(now)
  const hosted = new Map<string, HostedService>()
  // service name → version → hosted service: lookups without building a key per message.
  const hostedBy = new Map<string, Map<string, HostedService>>()
  // Command ids taken on, and the replies sent (re-sent when a command arrives again).
  const inbox = opts.inbox ?? createMemoryInbox(inboxSize)
  const running = new Set<Promise<unknown>>()
  const controllers = new Set<AbortController>()
  const counters = {
    commandsHandled: 0, commandsFailed: 0, duplicateCommands: 0, expiredCommands: 0, eventsHandled: 0, eventsRejected: 0, duplicateEvents: 0, eventsBound: 0,
    eventsNotStored: 0, deadLettersNotKept: 0, deadLettersDigested: 0,
  }
  // Trouble caused by a message (one per frame under a flood) is logged at most once a minute per reason.
  const rejections = createLogLimiter(rootLog)
  // Presence is untrusted: what it declares beyond the directory's bounds is refused, counted and logged at a bounded rate.
  const directory = createDirectory({
    onRefused: (what, device) => rejections.warn(`presence-${what}-limit`, { device }, `presence of ${device} declares more than the directory keeps (${what}s); the rest is ignored`),
  })
  const queueStore = opts.queueStore ?? createMemoryQueueStore()
  let started = false
  let stopping = false
  // Publishes our retained presence (set in start); never rejects.
  let announce = (): Promise<void> => Promise.resolve()
  let reannouncing = false

  for (const def of opts.services ?? []) {
    const key = `${def.contract.name}@${def.contract.version}`
    if (hosted.has(key)) throw new OutpostError(ErrorCode.INVALID_CONFIG, `service ${key} is registered twice on ${deviceId}`)
    const commands = new Map<string, ServedCommand>()
    for (const name of Object.keys(def.contract.commands)) {
      const handler = Object.hasOwn(def.commands, name) ? def.commands[name] : undefined
      if (handler !== undefined) commands.set(name, { handler: handler as ServedCommand['handler'], spec: def.contract.commands[name] as ServedCommand['spec'] })
    }
    const h = { def, log: rootLog.child({ service: def.contract.name, version: def.contract.version }), state: serviceState(def), commands }
    hosted.set(key, h)
    let versions = hostedBy.get(def.contract.name)
    if (versions === undefined) hostedBy.set(def.contract.name, (versions = new Map()))
    versions.set(def.contract.version, h)
  }

  const presence = (): PresencePayload => ({
    online: true,
    services: [...hosted.values()].map(({ def }) => ({
      name: def.contract.name,
      version: def.contract.version,
      commands: Object.keys(def.contract.commands),
      events: Object.keys(def.contract.events),
    })),
  })

  const childTrace = (traceparent: string | undefined): string | undefined => {
    if (traceparent === undefined) return undefined
    const parts = traceparent.split('-')
    if (parts.length !== 4) return traceparent
    return `${parts[0]}-${parts[1]}-${randomBytes(8).toString('hex')}-${parts[3]}`
  }

  // ---- handler contexts -------------------------------------------------------------

  // One class per runtime; fields set in the constructor and getters on the prototype keep
  // a context cheap to create (it is made for every message).
  class Context {
    private _log: Logger | undefined
    private _ac: AbortController | undefined
    private _timer: ReturnType<typeof setTimeout> | undefined
    private _proxy: unknown
    /** Set when the deadline timer aborted the signal (timers may fire a millisecond early). */
    timedOut = false
    constructor(
      protected readonly svc: HostedService,
      readonly env: Envelope,
      /** The subscription being served, for event contexts. */
      private readonly subscription?: string,
    ) {}
    get command(): string | undefined {
      return this.env.kind === 'command' ? this.env.name : undefined
    }
    /** The name of the service this context serves (for log lines kept outside the context). */
    get svcName(): string {
      return this.svc.def.contract.name
    }
    get caller(): unknown {
      const e = this.env
      return e.kind === 'command' ? { device: e.src, instance: e.inst, principal: e.principal, tenant: e.tenant } : undefined
    }
    get event(): unknown {
      const e = this.env
      return e.kind === 'event' ? { service: e.service, version: e.version, name: e.name, device: e.src, id: e.id, correlationId: e.corr } : undefined
    }
    get deviceId(): string {
      return deviceId
    }
    get messageId(): string {
      return this.env.id
    }
    get traceparent(): string | undefined {
      return this.env.traceparent
    }
    get deadline(): number | undefined {
      return this.env.deadline
    }
    get resources(): Record<string, unknown> {
      return resources
    }
    get state(): ServiceState<unknown> {
      return this.svc.state
    }
    get service(): unknown {
      return (this._proxy ??= serviceProxy(this.svc.def.uses, this.env))
    }
    get log(): Logger {
      return (this._log ??= this.svc.log.child(
        this.subscription === undefined ? { msgId: this.env.id, command: this.env.name } : { msgId: this.env.id, subscription: this.subscription },
      ))
    }
    get signal(): AbortSignal {
      if (this._ac === undefined) {
        const ac = (this._ac = new AbortController())
        controllers.add(ac)
        if (stopping) ac.abort(new OutpostError(ErrorCode.CANCELLED, 'runtime is stopping'))
        if (this.env.deadline !== undefined) {
          const ms = Math.max(0, this.env.deadline - now())
          this._timer = setTimeout(() => {
            this.timedOut = true
            ac.abort(new OutpostError(ErrorCode.TIMEOUT, 'deadline passed'))
          }, ms)
        }
      }
      return this._ac.signal
    }
    /** Releases the signal's timer; called when the handler settled. */
    dispose(): void {
      if (this._ac !== undefined) {
        if (this._timer !== undefined) clearTimeout(this._timer)
        controllers.delete(this._ac)
      }
    }
    emit(event: string, payload: unknown): Promise<void> {
      return emitEvent(this.svc, event, payload, this.env)
    }
    invoke(target: InvokeTarget, payload: unknown, o?: InvokeOptions): Promise<unknown> {
      return invoke(target, payload, o, this.env)
    }
    enqueue(queue: string, payload: unknown, o?: EnqueueOptions): JobRef {
      return queues.enqueue(this.svc, queue, [{ payload, opts: o }], this.env)[0]!
    }
  }

  /** What a queue worker gets: the job, its lease and its outcomes, besides everything a handler has. */
  class JobContext extends Context {
    constructor(
      svc: HostedService,
      private readonly running: RunningJob,
      private readonly policy: QueuePolicy,
      private readonly progressSchema: Schema | undefined,
    ) {
      // The job stands in for the message: events it emits carry its correlation id and trace.
      const j = running.job
      super(svc, { v: ENVELOPE_VERSION, kind: 'event', id: j.id, src: deviceId, inst, at: j.createdAt, corr: j.correlationId, traceparent: j.traceparent, name: j.queue })
    }
    override get event(): unknown {
      return undefined
    }
    override get command(): undefined {
      return undefined
    }
    override get caller(): unknown {
      return undefined
    }
    override get signal(): AbortSignal {
      return this.running.signal
    }
    override get log(): Logger {
      const j = this.running.job
      return (this._jobLog ??= this.svc.log.child({ jobId: j.id, queue: j.queue, attempt: j.attempt }))
    }
    private _jobLog: Logger | undefined
    get job(): unknown {
      const j = this.running.job
      return { id: j.id, queue: j.queue.slice(j.queue.indexOf('/') + 1), attempt: j.attempt, maxAttempts: this.policy.maxAttempts, createdAt: j.createdAt, correlationId: j.correlationId }
    }
    heartbeat(progress?: unknown): boolean {
      const value = progress === undefined || this.progressSchema === undefined ? progress : validate(this.progressSchema, progress, `progress of job ${this.running.job.id}`)
      return this.running.heartbeat(value)
    }
    retry(o?: { delayMs?: number; reason?: string }): JobDecision {
      return new JobDecision('retry', o?.reason ?? 'the worker asked to try again', o?.delayMs)
    }
    fail(reason: string): JobDecision {
      return new JobDecision('fail', reason)
    }
  }

  const serviceProxy = (uses: readonly AnyContract[], parent: Parent): unknown => {
    const out: Record<string, Record<string, unknown>> = {}
    for (const c of uses) (out[c.name] ??= {})[c.version] = clientFor(c, parent)
    return out
  }

  const clientFor = <K extends AnyContract>(contract: K, parent?: Parent): ContractClient<K> => {
    const client: Record<string, unknown> = {}
    for (const command of Object.keys(contract.commands)) {
      const target: InvokeTarget = { service: contract.name, version: contract.version, command }
      client[command] = (payload: unknown, o?: InvokeOptions) => invoke(target, payload, o, parent)
    }
    return client as ContractClient<K>
  }

  // ---- calling ----------------------------------------------------------------------

  const errorReply = (cmd: Envelope, error: WireError): Envelope => ({
    v: ENVELOPE_VERSION, kind: 'reply', id: ids(), src: deviceId, inst, at: now(), corr: cmd.id, replyTo: cmd.replyTo ?? cmd.src, error,
  })

  const NO_OPTIONS: InvokeOptions = {}
  const invoke = (target: InvokeTarget, payload: unknown, o: InvokeOptions = NO_OPTIONS, parent?: Parent): Promise<unknown> => {
    if (stopping) return Promise.reject(new OutpostError(ErrorCode.BRIDGE_CLOSED, `runtime of ${deviceId} is stopping`))
    const version = target.version ?? '1'
    const at = now()
    let timeoutMs = o.timeoutMs ?? defaultTimeoutMs
    if (parent?.deadline !== undefined) timeoutMs = Math.min(timeoutMs, parent.deadline - at)
    if (timeoutMs <= 0) return Promise.reject(new OutpostError(ErrorCode.TIMEOUT, `no time left to call ${target.service}.${target.command}`))
    const cmd: Envelope = {
      v: ENVELOPE_VERSION, kind: 'command', id: ids(), src: deviceId, inst, at,
      service: target.service, version, name: target.command, replyTo: deviceId,
      deadline: at + timeoutMs, payload,
    }
    const trace = o.traceparent ?? childTrace(parent?.traceparent)
    if (trace !== undefined) cmd.traceparent = trace
    if (o.device === undefined || o.device === deviceId) {
      const svc = hostedBy.get(target.service)?.get(version)
      if (svc !== undefined) return runLocal(svc, cmd)
    }
    return invokeRemote(cmd, o.device, timeoutMs)
  }

  const invokeRemote = (cmd: Envelope, device: string | undefined, timeoutMs: number): Promise<unknown> => {
    const service = cmd.service!
    const version = cmd.version!
    if (bridge.status.type !== 'connected') {
      return Promise.reject(new OutpostError(ErrorCode.BRIDGE_UNAVAILABLE, `cannot reach ${service}@${version}: not connected to the broker`, { retryable: true }))
    }
    const waitMs = Math.min(discoveryWaitMs, timeoutMs)
    if (device === undefined) {
      const found = directory.pick(service, version)
      if (found === undefined) {
        return directory.waitFor(service, version, waitMs).then((late) => {
          if (late !== undefined) return sendTo(cmd, late.device)
          // NO_HANDLER only when no device ever declared the service; one that did is away for now.
          if (directory.knows(service, version)) throw unreachable(service, version, `no instance of service ${service}@${version} is live just now`)
          throw new OutpostError(ErrorCode.NO_HANDLER, `no live instance of service ${service}@${version} is known`, { details: { service, version } })
        })
      }
      device = found.device
    } else if (directory.deviceState(device) === 'gone') {
      // Named, and known to be offline: give it the discovery wait to come back.
      const named = device
      return directory.waitForDevice(named, waitMs).then((back) => {
        if (back) return sendTo(cmd, named)
        throw unreachable(service, version, `device ${named} is offline`, named)
      })
    }
    return sendTo(cmd, device)
  }
  const unreachable = (service: string, version: string, message: string, device?: string): OutpostError =>
    new OutpostError(ErrorCode.SERVICE_UNREACHABLE, message, { retryable: true, details: device === undefined ? { service, version } : { service, version, device } })
  const sendTo = (cmd: Envelope, device: string): Promise<unknown> => {
    cmd.target = device
    return bridge.request(cmd).then(unwrapReply)
  }
  const unwrapReply = (reply: Envelope): unknown => {
    if (reply.error !== undefined) throw fromWireError(reply.error)
    return reply.payload
  }

  /** Runs a command hosted here without the broker, with the same validation, errors and deadline. */
  const runLocal = (svc: HostedService, cmd: Envelope): Promise<unknown> => {
    const out = execute(svc, cmd)
    if (!(out instanceof Promise)) return settleLocal(out)
    return new Promise<unknown>((resolve, reject) => {
      const entry = {
        deadline: cmd.deadline!,
        expire: () => reject(new OutpostError(ErrorCode.TIMEOUT, `no reply to ${cmd.service}.${cmd.name} within ${cmd.deadline! - cmd.at} ms`, { retryable: true })),
      }
      localDeadlines.add(entry)
      out.then((r) => {
        localDeadlines.remove(entry)
        settleLocal(r).then(resolve, reject)
      })
    })
  }
  const settleLocal = (out: Outcome): Promise<unknown> =>
    out.error === undefined ? Promise.resolve(out.value) : Promise.reject(fromWireError(out.error))

  // ---- serving commands ---------------------------------------------------------------

  const fail = (error: WireError): Outcome => {
    counters.commandsFailed++
    return { value: undefined, error }
  }

  /** Validates, runs the handler and checks its result; never throws, and stays synchronous for synchronous handlers. */
  const execute = (svc: HostedService | undefined, cmd: Envelope): Outcome | Promise<Outcome> => {
    const name = cmd.name!
    const served = svc?.commands.get(name)
    if (svc === undefined || served === undefined) {
      return fail({ code: ErrorCode.NO_HANDLER, message: `device ${deviceId} has no command ${cmd.service}@${cmd.version}.${name}` })
    }
    const handler = served.handler
    const spec = served.spec as { payload: Schema; result: Schema }
    const parsed = safeParse(spec.payload, cmd.payload)
    if (!parsed.success) {
      const issues = toValidationIssues(parsed.issues)
      return fail({ code: ErrorCode.VALIDATION_FAILED, message: `payload of ${cmd.service}.${name} is invalid`, details: { issues } })
    }
    const ctx = new Context(svc, cmd)
    let result: unknown
    try {
      result = (handler as (p: unknown, c: unknown) => unknown)(parsed.output, ctx)
    } catch (err) {
      return handlerFailed(ctx, err)
    }
    if (result instanceof Promise) {
      return result.then(
        (r) => finish(ctx, spec, cmd, r),
        (err: unknown) => handlerFailed(ctx, err),
      )
    }
    return finish(ctx, spec, cmd, result)
  }

  const finish = (ctx: Context, spec: { result: Schema }, cmd: Envelope, result: unknown): Outcome => {
    ctx.dispose()
    if (ctx.timedOut || (cmd.deadline !== undefined && now() >= cmd.deadline)) {
      // Finished too late: whatever it computed, the caller has given up.
      return fail({ code: ErrorCode.TIMEOUT, message: `${cmd.service}.${cmd.name} finished after its deadline` })
    }
    const checked = safeParse(spec.result, result)
    if (!checked.success) {
      ctx.log.error({ issues: toValidationIssues(checked.issues) }, 'handler returned a result that fails its schema')
      return fail({ code: ErrorCode.INTERNAL, message: 'internal error' })
    }
    counters.commandsHandled++
    return { value: checked.output, error: undefined }
  }

  const handlerFailed = (ctx: Context, err: unknown): Outcome => {
    ctx.dispose()
    const wire = toWireError(err)
    // Any caller can make a handler fail again and again: one line per command and code a minute.
    const svc = ctx.svcName
    const what = `${svc}.${ctx.command ?? ''}`
    if (wire.code === ErrorCode.INTERNAL) rejections.error(`handler-failed:${what}`, { err, service: svc, command: ctx.command, msgId: ctx.messageId }, 'command handler failed')
    else rejections.warn(`handler-refused:${what}:${wire.code}`, { code: wire.code, service: svc, command: ctx.command, msgId: ctx.messageId }, wire.message)
    return fail(wire)
  }

  const replyFor = (cmd: Envelope, out: Outcome): Envelope =>
    out.error !== undefined
      ? errorReply(cmd, out.error)
      : {
          // A reply names only the command it answers (corr): service and name would be bytes for nothing.
          v: ENVELOPE_VERSION, kind: 'reply', id: ids(), src: deviceId, inst, at: now(), corr: cmd.id, replyTo: cmd.replyTo ?? cmd.src, payload: out.value,
        }


  const sendReply = (reply: Envelope): void => {
    bridge.publish(reply).catch((err: unknown) => rejections.warn(`reply-not-sent:${(err as { code?: string }).code ?? 'INTERNAL'}`, { err: (err as Error).message, corr: reply.corr }, 'reply not sent; a redelivered command will re-send it'))
  }

  /** The inbox could not be read or written (storage busy or full): one line per code per minute. */
  const inboxTrouble = (err: unknown, cmd: Envelope): void => {
    const code = toWireError(err).code
    rejections.warn(`inbox:${code}`, { code, msgId: cmd.id, service: cmd.service, command: cmd.name }, `command inbox not available (${code}); commands are served without their redelivery record`)
  }

  const onCommand = (msg: InboundMessage): void => {
    const cmd = msg.envelope
    if (cmd.kind !== 'command' || stopping) return
    let seen: ReturnType<Inbox['get']>
    try {
      seen = inbox.get(cmd.id)
    } catch (err) {
      // Storage cannot tell whether this command ran already: the caller is told, and may retry.
      inboxTrouble(err, cmd)
      sendReply(errorReply(cmd, toWireError(err)))
      return
    }
    if (seen !== undefined) {
      if (seen.state === 'done') {
        counters.duplicateCommands++
        sendReply(seen.reply) // executed once; the caller gets the same reply again
        return
      }
      if (seen.instance === inst) {
        counters.duplicateCommands++ // still running here; its reply will follow
        return
      }
      // Claimed by a process of this device that is gone (crash, power cut) before it answered.
      rootLog.warn({ msgId: cmd.id, service: cmd.service, command: cmd.name }, 'running a command again that a previous start did not finish')
    }
    if (cmd.deadline !== undefined && cmd.deadline + clockSkewMs < now()) {
      counters.expiredCommands++
      rejections.warn('command-expired', { msgId: cmd.id, service: cmd.service, command: cmd.name }, 'dropped a command whose deadline has passed')
      return
    }
    try {
      inbox.claim(cmd.id, inst)
    } catch (err) {
      // A full disk or a long writer in another process: the command is served all the same
      // (it may need no writes of its own); only a redelivery of it could run it again.
      inboxTrouble(err, cmd)
    }
    const out = execute(hostedBy.get(cmd.service!)?.get(cmd.version ?? '1'), cmd)
    const done = (o: Outcome): void => {
      const reply = replyFor(cmd, o)
      try {
        inbox.complete(cmd.id, reply)
      } catch (err) {
        inboxTrouble(err, cmd)
      }
      sendReply(reply)
    }
    if (!(out instanceof Promise)) return done(out)
    const p = out.then(done)
    running.add(p)
    void p.finally(() => running.delete(p))
  }

  // ---- events -------------------------------------------------------------------------

  /** The envelope of an event of `svc` (payload already checked). */
  const eventEnvelope = (svc: HostedService, event: string, payload: unknown, traceparent: string | undefined, corr: string | undefined): Envelope => {
    const env: Envelope = {
      v: ENVELOPE_VERSION, kind: 'event', id: ids(), src: deviceId, inst, at: now(),
      service: svc.def.contract.name, version: svc.def.contract.version, name: event, payload,
    }
    if (traceparent !== undefined) env.traceparent = traceparent
    if (corr !== undefined) env.corr = corr
    return env
  }

  // Each event name a service of this runtime emits gets an encoder that writes the fields its
  // events share as bytes made once (same frames as the codec's `encode`).
  const eventEncoders = new Map<string, Map<string, (env: Envelope) => Uint8Array>>()
  const encodeEvent = (env: Envelope): Uint8Array => {
    const service = env.service!
    let byName = eventEncoders.get(service)
    if (byName === undefined) eventEncoders.set(service, (byName = new Map()))
    let enc = byName.get(env.name!)
    if (enc === undefined) {
      enc = outboxCodec!.eventEncoder({ src: env.src, inst: env.inst, service, version: env.version!, name: env.name! })
      if (byName.size < 1_024) byName.set(env.name!, enc)
    }
    return enc(env)
  }

  /** Commits an event to the outbox (the pump delivers it, in order, when connected). @throws OUTBOX_FULL, STORE_FAILED */
  const appendToOutbox = (env: Envelope, topic = bridge.topics.topicOf(env)): void => {
    outbox!.append({ stream: 'events', topic, frame: encodeEvent(env), retain: false })
  }

  /**
   * This runtime's own subscriptions and bindings. With an outbox, an event a service emits
   * reaches them at once, without the broker (so a device's chains keep running offline); the
   * copy the broker brings back later is dropped as a duplicate.
   */
  interface LocalReceiver {
    filter: string
    /** A subscription: handed the event after it was committed. */
    event?: (msg: InboundMessage) => void
    /** A binding: enqueues its job in the same transaction as the event's outbox entry. */
    bind?: (env: Envelope) => void
  }
  const localReceivers: LocalReceiver[] = []
  const receiversByTopic = new Map<string, LocalReceiver[]>()
  const receiversOf = (topic: string): LocalReceiver[] => {
    let found = receiversByTopic.get(topic)
    if (found === undefined) {
      found = localReceivers.filter((r) => topicMatches(r.filter, topic))
      if (receiversByTopic.size < 1_024) receiversByTopic.set(topic, found)
    }
    return found
  }

  const emitEvent = (svc: HostedService, event: string, payload: unknown, parent?: Envelope, correlation?: string): Promise<void> => {
    const schema = svc.def.contract.events[event] as Schema | undefined
    if (schema === undefined || svc.def.contract.resultEvents.has(event)) {
      return Promise.reject(new OutpostError(ErrorCode.NO_HANDLER, `service ${svc.def.contract.name} declares no event "${event}" it may emit`))
    }
    let env: Envelope
    try {
      const value = validate(schema, payload, `event ${svc.def.contract.name}.${event}`)
      // Correlation: a schedule's occurrence id, the command this event was emitted for, or whatever the parent carried.
      env = eventEnvelope(svc, event, value, childTrace(parent?.traceparent), correlation ?? (parent?.kind === 'command' ? parent.id : parent?.corr))
      if (outbox === undefined) return bridge.publish(env)
      const topic = bridge.topics.topicOf(env)
      const receivers = receiversOf(topic)
      if (receivers.length === 0) appendToOutbox(env, topic)
      else {
        queueStore.transaction(() => {
          appendToOutbox(env, topic)
          for (const r of receivers) r.bind?.(env)
        })
        pump?.kick()
        const msg: InboundMessage = { topic, envelope: env, retained: false, redelivered: false }
        for (const r of receivers) r.event?.(msg)
        return Promise.resolve()
      }
    } catch (err) {
      return Promise.reject(err)
    }
    pump?.kick()
    return Promise.resolve()
  }

  const onEvent = (svc: HostedService, subName: string, sub: SubscriptionSpec, seen: RecentMap<true>) => (msg: InboundMessage): void => {
    const env = msg.envelope
    if (env.kind !== 'event' || stopping) return
    if (seen.has(env.id)) {
      counters.duplicateEvents++
      return
    }
    seen.set(env.id, true)
    const parsed = safeParse(sub.schema, env.payload)
    if (!parsed.success) {
      counters.eventsRejected++
      rejections.warn(`event-invalid:${svc.def.contract.name}/${subName}`, { service: svc.def.contract.name, subscription: subName, msgId: env.id, issues: toValidationIssues(parsed.issues).slice(0, 5) }, 'dropped an event that fails the subscription schema')
      return
    }
    const ctx = new Context(svc, env, subName)
    const p = (async () => {
      try {
        await (sub.handler as (p: unknown, c: unknown) => unknown)(parsed.output, ctx)
        counters.eventsHandled++
      } catch (err) {
        counters.eventsRejected++
        // Events come from anyone on the broker: one line per subscription a minute, with the count.
        rejections.error(`subscriber-failed:${svc.def.contract.name}/${subName}`, { err, service: svc.def.contract.name, subscription: subName, msgId: env.id }, 'subscription handler failed')
      } finally {
        ctx.dispose()
      }
    })()
    running.add(p)
    void p.finally(() => running.delete(p))
  }

  // ---- schedules ----------------------------------------------------------------------

  const scheduler = createScheduler({
    clock,
    store: stateStore,
    log: rootLog,
    jobs: [...hosted.values()].flatMap((svc) =>
      Object.entries(svc.def.schedules).map(([name, spec]) => ({
        service: svc.def.contract.name,
        name,
        spec,
        // The occurrence id travels as the event's correlation id: receivers can dedupe by it.
        fire: (occ: Occurrence) => emitEvent(svc, spec.event, spec.payload(occ), undefined, occ.id),
      })),
    ),
  })

  // ---- queues -------------------------------------------------------------------------

  // Result events of a runtime without an outbox: published once their settlement committed.
  let unpublished: Envelope[] = []
  const afterCommit = (): void => {
    pump?.kick()
    if (unpublished.length === 0) return
    const envs = unpublished
    unpublished = []
    for (const env of envs) {
      bridge.publish(env).catch((err: unknown) => rootLog.warn({ err: (err as Error).message, event: env.name }, 'result event not published (no outbox)'))
    }
  }
  const queues = createServiceQueues({
    services: [...hosted.values()],
    store: queueStore,
    clock,
    log: rootLog,
    counters,
    rejections,
    inboundDeadLetters: opts.inboundDeadLetters,
    stopping: () => stopping,
    pollMs: opts.queuePollMs,
    childTrace,
    afterCommit,
    workerContext: (svc, running, policy, progress) => new JobContext(svc, running, policy, progress),
    result: (svc, event, payload, job) => {
      // Built by the runtime from checked values: not validated again.
      const env = eventEnvelope(svc, event, payload, childTrace(job.traceparent), job.correlationId)
      if (outbox === undefined) unpublished.push(env)
      else appendToOutbox(env)
    },
  })
  const runner = queues.runner

  // ---- lifecycle --------------------------------------------------------------------

  const runtime: Runtime = {
    deviceId,
    directory,
    async start(sopts) {
      if (started) return
      started = true
      for (const { def } of hosted.values()) {
        for (const name of Object.keys(def.resources)) {
          if (!(name in resources)) {
            throw new OutpostError(ErrorCode.INVALID_CONFIG, `service ${def.contract.name} needs resource "${name}", which was not provided`)
          }
        }
      }
      // Our offline presence (last will, goodbye) names our services: whoever starts while we are
      // away knows them, and hears SERVICE_UNREACHABLE for them rather than NO_HANDLER.
      bridge.declareServices(presence().services)
      await bridge.subscribe(
        bridge.topics.presenceFilter(),
        (msg) => {
          const env = msg.envelope
          const p = env.payload as PresencePayload | undefined
          if (env.kind !== 'presence' || typeof p !== 'object' || p === null || typeof p.online !== 'boolean' || !Array.isArray(p.services ?? [])) return
          // The directory bounds what an offline presence declares as it does an online one.
          directory.update(env.src, env.inst, { online: p.online, services: p.services ?? [] })
          // A device that comes back may have missed commands sent while it was away (a broker
          // restart loses them); send ours again, its inbox keeps them from running twice.
          if (p.online && !msg.retained && env.src !== deviceId) bridge.resendPending(env.src)
        },
        {
          // Someone cleared a device's retained presence (an empty retained message): it is gone.
          // Ours is announced again while we run, so only a presence nobody stands behind stays cleared.
          onCleared: (device) => {
            if (device !== deviceId) directory.clear(device)
            else if (!stopping && bridge.status.type === 'connected' && !reannouncing) {
              // One at a time: a flood of empty frames gets no more publishes than round trips.
              reannouncing = true
              void announce().finally(() => (reannouncing = false))
            }
          },
        },
      )
      for (const svc of hosted.values()) {
        const c = svc.def.contract
        await bridge.subscribe(bridge.topics.commandFilter(deviceId, c.name, c.version), onCommand)
        for (const [subName, sub] of Object.entries(svc.def.subscriptions)) {
          const filter = bridge.topics.eventFilter({ device: sub.device, service: sub.service, version: sub.version, event: sub.event })
          const handler = onEvent(svc, subName, sub, createRecentMap<true>(inboxSize))
          localReceivers.push({ filter, event: handler })
          await bridge.subscribe(filter, handler)
        }
        for (const [name, b] of Object.entries(svc.def.bindings)) {
          const filter = bridge.topics.eventFilter({ device: b.device, service: b.service, version: b.version, event: b.event })
          localReceivers.push({ filter, bind: queues.bindLocally(svc, name, b) })
          await bridge.subscribe(filter, queues.onBound(svc, name, b))
        }
      }
      announce = (): Promise<void> =>
        bridge
          .publish({ v: ENVELOPE_VERSION, kind: 'presence', id: ids(), src: deviceId, inst, at: now(), payload: presence() }, { retain: true })
          .catch((err: unknown) => rootLog.warn({ err: (err as Error).message }, 'presence not announced'))
      if (outbox !== undefined) pump = createOutboxPump({ outbox, bridge, window: opts.outboxWindow, log: rootLog })
      // Announce on every (re)connect: the broker may have lost the retained birth or sent our will.
      let stale = false
      bridge.onStatus((s) => {
        // Presence that arrives on the next connection (retained, or held in our session) starts a new generation.
        if (s.type === 'disconnected' || s.type === 'reconnecting') {
          directory.markStale()
          stale = true
        }
        if (s.type === 'connected') {
          // The bridge asks for the retained presence again on every connect, session or not;
          // whoever has not announced itself again by now is no longer known to be alive (it
          // stays known: a call to its services is SERVICE_UNREACHABLE, and waits for its return).
          if (stale) directory.pruneStale()
          stale = false
          void announce()
        }
      })
      try {
        await bridge.connect()
      } catch (err) {
        if (sopts?.waitForBroker === true) throw err
        rootLog.warn({ err: (err as Error).message }, 'broker unreachable at start; running offline and retrying')
        scheduler.start()
        runner.start()
        return
      }
      scheduler.start()
      runner.start()
      rootLog.info({ services: [...hosted.keys()] }, 'runtime started')
    },
    client: (contract) => clientFor(contract),
    invoke: (target, payload, o) => invoke(target, payload, o),
    queue: (contract, queue) => {
      const svc = hostedBy.get(contract.name)?.get(contract.version)
      if (svc === undefined) throw new OutpostError(ErrorCode.NO_HANDLER, `service ${contract.name}@${contract.version} is not hosted by ${deviceId}`)
      return queues.handle(svc, queue) as never
    },
    stats: () => ({ ...counters, rejections: rejections.counts(), bridge: bridge.stats(), schedules: scheduler.stats(), outbox: outbox?.stats(), queues: runner.stats() }),
    async stop(sopts) {
      if (stopping) return
      stopping = true
      scheduler.stop()
      const drainMs = sopts?.drainMs ?? 5_000
      await Promise.all([
        // Workers get the same grace; their results go to the outbox before the pump stops.
        runner.stop({ graceMs: drainMs, onShutdown: opts.jobsOnStop ?? 'release' }),
        Promise.race([Promise.all(running), new Promise((r) => setTimeout(r, drainMs).unref())]),
      ])
      for (const ac of controllers) ac.abort(new OutpostError(ErrorCode.CANCELLED, 'runtime is stopping'))
      // What the outbox still holds stays there for the next start; only publishes in flight are awaited.
      await pump?.stop(drainMs)
      await bridge.close({ drainMs })
      rootLog.info('runtime stopped')
    },
  }
  return runtime
}
