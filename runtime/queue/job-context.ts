import type { Logger } from 'pino'
import type { Schema } from '../contract/contract.js'
import { JobDecision } from '../contract/queue.js'
import { ENVELOPE_VERSION } from '../wire/envelope.js'
import { MessageContext, type ContextDeps } from '../service/handler-context.js'
import type { HostedService } from '../service/hosted-service.js'
import { validate } from '../service/validation.js'
import type { RunningJob } from './queue-runner.js'
import type { QueuePolicy } from './retry-policy.js'

/**
 * What a queue worker gets (`ctx`): the job, its lease and its outcomes, besides everything a
 * handler has. The job stands in for the message: events it emits and calls it makes carry its
 * correlation id and trace.
 */
export class JobContext extends MessageContext {
  private _jobLog: Logger | undefined
  constructor(
    rt: ContextDeps,
    svc: HostedService,
    private readonly running: RunningJob,
    private readonly policy: QueuePolicy,
    private readonly progressSchema: Schema | undefined,
  ) {
    // The job stands in for the message: events it emits carry its correlation id and trace.
    const j = running.job
    super(rt, svc, { v: ENVELOPE_VERSION, kind: 'event', id: j.id, src: rt.core.deviceId, inst: rt.core.inst, at: j.createdAt, corr: j.correlationId, traceparent: j.traceparent, name: j.queue })
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
