import type { Logger } from 'pino'
import type { AnyContract } from '../contract/contract.js'
import type { ContractClient, EnqueueOptions, InvokeOptions, InvokeTarget, JobRef, ServiceState } from '../contract/service.js'
import { ErrorCode, OutpostError } from '../errors.js'
import type { Envelope } from '../wire/envelope.js'
import type { Parent } from './calling.js'
import type { HostedService } from './hosted-service.js'
import type { RuntimeCore } from './runtime-core.js'

/**
 * What a handler's context reaches beyond its message: the runtime's core and the rooms that
 * call, emit and enqueue on the handler's behalf. One object per runtime, shared by every context.
 */
export interface ContextDeps {
  readonly core: RuntimeCore
  /** Calls a command, within the parent's deadline and trace. */
  invoke(target: InvokeTarget, payload: unknown, o: InvokeOptions | undefined, parent: Parent): Promise<unknown>
  /** Typed calls to a contract's commands, within the parent's deadline and trace. */
  client<K extends AnyContract>(contract: K, parent: Parent): ContractClient<K>
  /** Emits an event of `svc`, correlated with the message being handled. */
  emit(svc: HostedService, event: string, payload: unknown, parent: Envelope): Promise<void>
  /** Stores a job in a queue of `svc`, correlated with the message being handled. */
  enqueue(svc: HostedService, queue: string, payload: unknown, o: EnqueueOptions | undefined, parent: Envelope): JobRef
}

/**
 * The `ctx` a command or subscription handler gets. Fields set in the constructor and getters
 * on the prototype keep a context cheap to create (one is made for every message); what costs
 * (logger, signal, service proxy) is made on first use.
 */
export class MessageContext {
  private _log: Logger | undefined
  private _ac: AbortController | undefined
  /** Cancels the deadline's timer (on the runtime's clock). */
  private _timer: (() => void) | undefined
  private _proxy: unknown
  /** Set when the deadline timer aborted the signal (timers may fire a millisecond early). */
  timedOut = false
  constructor(
    protected readonly rt: ContextDeps,
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
    return this.rt.core.deviceId
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
    return this.rt.core.resources
  }
  get state(): ServiceState<unknown> {
    return this.svc.state
  }
  get service(): unknown {
    return (this._proxy ??= serviceProxy(this.rt, this.svc.def.uses, this.env))
  }
  get log(): Logger {
    return (this._log ??= this.svc.log.child(
      this.subscription === undefined ? { msgId: this.env.id, command: this.env.name } : { msgId: this.env.id, subscription: this.subscription },
    ))
  }
  get signal(): AbortSignal {
    if (this._ac === undefined) {
      const core = this.rt.core
      const ac = (this._ac = new AbortController())
      core.controllers.add(ac)
      if (core.stopping) ac.abort(new OutpostError(ErrorCode.CANCELLED, 'runtime is stopping'))
      if (this.env.deadline !== undefined) {
        this._timer = core.clock.setTimer(this.env.deadline, () => {
          this.timedOut = true
          ac.abort(new OutpostError(ErrorCode.TIMEOUT, 'deadline passed'))
        })
      }
    }
    return this._ac.signal
  }
  /** Releases the signal's timer; called when the handler settled. */
  dispose(): void {
    if (this._ac !== undefined) {
      this._timer?.()
      this.rt.core.controllers.delete(this._ac)
    }
  }
  emit(event: string, payload: unknown): Promise<void> {
    return this.rt.emit(this.svc, event, payload, this.env)
  }
  invoke(target: InvokeTarget, payload: unknown, o?: InvokeOptions): Promise<unknown> {
    return this.rt.invoke(target, payload, o, this.env)
  }
  enqueue(queue: string, payload: unknown, o?: EnqueueOptions): JobRef {
    return this.rt.enqueue(this.svc, queue, payload, o, this.env)
  }
}

/** `ctx.service`: typed clients of the contracts a service uses, by name then version. */
function serviceProxy(rt: ContextDeps, uses: readonly AnyContract[], parent: Parent): unknown {
  const out: Record<string, Record<string, unknown>> = {}
  for (const c of uses) (out[c.name] ??= {})[c.version] = rt.client(c, parent)
  return out
}
