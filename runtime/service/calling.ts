import type { AnyContract } from '../contract/contract.js'
import type { ContractClient, InvokeOptions, InvokeTarget } from '../contract/service.js'
import { ErrorCode, OutpostError, fromWireError } from '../errors.js'
import { createDeadlineTracker } from '../messaging/deadline-tracker.js'
import { ENVELOPE_VERSION, type Envelope } from '../wire/envelope.js'
import type { Directory } from './directory.js'
import type { HostedService } from './hosted-service.js'
import { childTrace, type RuntimeCore } from './runtime-core.js'
import type { Outcome } from './serving.js'

/** What a call inherits from the message being handled: its deadline and trace. */
export interface Parent {
  deadline?: number
  traceparent?: string
}

/** What calling needs besides the core. */
export interface CallingDeps {
  core: RuntimeCore
  directory: Directory
  /** Runs a command of a service hosted here (the serving room's `execute`). */
  execute(svc: HostedService, cmd: Envelope): Outcome | Promise<Outcome>
  /** Deadline of a call that names none, ms. */
  defaultTimeoutMs: number
  /** How long a call waits for a first live instance of its service to be announced, ms. */
  discoveryWaitMs: number
}

/** Calls to commands: hosted here (run in process) or elsewhere (over the link, found in the directory). */
export interface Calling {
  /**
   * Calls a command. @throws NO_HANDLER, SERVICE_UNREACHABLE, VALIDATION_FAILED, TIMEOUT,
   * INTERNAL, BRIDGE_UNAVAILABLE, BRIDGE_CLOSED (as `Runtime.invoke`)
   */
  invoke(target: InvokeTarget, payload: unknown, o?: InvokeOptions, parent?: Parent): Promise<unknown>
  /** Typed calls to a contract's commands, within `parent`'s deadline and trace. */
  clientFor<K extends AnyContract>(contract: K, parent?: Parent): ContractClient<K>
}

const NO_OPTIONS: InvokeOptions = {}

const unreachable = (service: string, version: string, message: string, device?: string): OutpostError =>
  new OutpostError(ErrorCode.SERVICE_UNREACHABLE, message, { retryable: true, details: device === undefined ? { service, version } : { service, version, device } })

const unwrapReply = (reply: Envelope): unknown => {
  if (reply.error !== undefined) throw fromWireError(reply.error)
  return reply.payload
}

const settleLocal = (out: Outcome): Promise<unknown> =>
  out.error === undefined ? Promise.resolve(out.value) : Promise.reject(fromWireError(out.error))

/** Creates the calling room of a runtime. */
export function createCalling(deps: CallingDeps): Calling {
  const { core, directory, execute, defaultTimeoutMs, discoveryWaitMs } = deps
  const { link, deviceId, inst, now, ids, hostedBy } = core
  const localDeadlines = createDeadlineTracker(core.clock)

  const invoke = (target: InvokeTarget, payload: unknown, o: InvokeOptions = NO_OPTIONS, parent?: Parent): Promise<unknown> => {
    if (core.stopping) return Promise.reject(new OutpostError(ErrorCode.BRIDGE_CLOSED, `runtime of ${deviceId} is stopping`))
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
    if (link.status.type !== 'connected') {
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

  const sendTo = (cmd: Envelope, device: string): Promise<unknown> => {
    cmd.target = device
    return link.request(cmd).then(unwrapReply)
  }

  /** Runs a command hosted here without the broker, with the same validation, errors and deadline. */
  const runLocal = (svc: HostedService, cmd: Envelope): Promise<unknown> => {
    const out = execute(svc, cmd)
    if (!(out instanceof Promise)) return settleLocal(out)
    return new Promise<unknown>((resolve, reject) => {
      const entry = {
        deadline: cmd.deadline!,
        tracked: false,
        due: 0,
        expire: () => reject(new OutpostError(ErrorCode.TIMEOUT, `no reply to ${cmd.service}.${cmd.name} within ${cmd.deadline! - cmd.at} ms`, { retryable: true })),
      }
      localDeadlines.add(entry, cmd.at)
      out.then((r) => {
        localDeadlines.remove(entry)
        settleLocal(r).then(resolve, reject)
      })
    })
  }

  const clientFor = <K extends AnyContract>(contract: K, parent?: Parent): ContractClient<K> => {
    const client: Record<string, unknown> = {}
    for (const command of Object.keys(contract.commands)) {
      const target: InvokeTarget = { service: contract.name, version: contract.version, command }
      client[command] = (payload: unknown, o?: InvokeOptions) => invoke(target, payload, o, parent)
    }
    return client as ContractClient<K>
  }

  return { invoke, clientFor }
}
