// Commands from outside the device network (the gateway's HTTP API, NATS request/reply, RabbitMQ
// RPC) to device commands: checked against the caller's allow rules and the registry (is the
// device known and online, does it announce this service, version and command, does the payload
// fit the JSON Schema of the contract document it announced, when it announced one), then sent over
// MQTT through the gateway's own runtime to the named device or to a live instance, with a
// deadline. Every outcome is a value or an OutpostError whose code each front end turns into its
// protocol's error (see `statusOf`).
import { ErrorCode, OutpostError, isOutpostError } from '../../runtime/errors.js'
import type { Runtime } from '../../runtime/index.js'
import { isTopicSegment } from '../../runtime/topic-level.js'
import { topicMatches } from '../../runtime/wire/topics.js'
import type { DeviceEntry, Registry } from '../registry/registry.js'
import type { DeviceAdmission } from './device-admission.js'
import { createPayloadCheck, type PayloadCheck } from './payload-check.js'
import { quoted, shown } from './shown.js'

/** What to do with a command for a device that is offline. */
export type OfflinePolicy = 'fail' | 'hold'

/** One command from a cloud caller. */
export interface CommandRequest {
  /** The device to run it; undefined: any live device that announces the command. */
  device?: string
  service: string
  version: string
  command: string
  payload: unknown
  /** Deadline from now, ms (default and ceiling from the configuration). */
  timeoutMs?: number
  /** Overrides the configured policy for an offline device. */
  offline?: OfflinePolicy
  traceparent?: string
  /**
   * When the caller sent it (epoch ms), for a request that may have waited in a queue (RabbitMQ's
   * `timestamp`): its deadline counts from then, so one that waited for a gateway that was down,
   * or came back after a gateway's crash, does not run after its caller gave up.
   */
  sentAt?: number
  /**
   * Aborts when the caller has gone (an HTTP client that closed its connection): a call still
   * waiting for its device stops waiting and gives its place (commands.maxPending) back; one sent
   * already is no longer waited for (the device may still run it).
   */
  signal?: AbortSignal
}

export interface CommandDefaults {
  /** Deadline of a call that names none, ms (default 10 000). */
  timeoutMs: number
  /** Longest deadline a caller may ask for, ms (default 300 000): a held command waits at most this long. */
  maxTimeoutMs: number
  /** Offline device: `fail` at once with DEVICE_OFFLINE (default) or `hold` until it is back or the deadline passes. */
  offline: OfflinePolicy
  /**
   * Calls in progress at once, from every front end together (default 4,096; held ones count):
   * a further call is GATEWAY_BUSY at once. Unbounded, 50,000 held calls from one NATS client
   * took a gateway to 1.3 GB and slowed every other call a hundredfold.
   */
  maxPending: number
}

/** Error codes a device's answer may not carry (see `send`). */
const GATEWAY_ONLY: ReadonlySet<string> = new Set([ErrorCode.NOT_AUTHENTICATED, ErrorCode.GATEWAY_BUSY, ErrorCode.DEVICE_OFFLINE, ErrorCode.DEVICE_UNKNOWN, ErrorCode.TARGET_UNAVAILABLE, ErrorCode.TARGET_REJECTED])

/** How long after a gateway start commands wait for the devices that were online before it. */
const RECONNECT_GRACE_MS = 10_000

export const COMMAND_DEFAULTS: CommandDefaults = { timeoutMs: 10_000, maxTimeoutMs: 300_000, offline: 'fail', maxPending: 4_096 }

export interface CommandRouter {
  /**
   * Runs a device command; the device's result.
   * @throws (rejects) NOT_AUTHORIZED (outside `allow`), BAD_ARGUMENT (a name that is not a topic
   *   level, a bad timeout), DEVICE_UNKNOWN (also a device that cannot log in, before or while
   *   held), DEVICE_OFFLINE, NO_HANDLER (the device, or no device, announces the command),
   *   VALIDATION_FAILED (the payload does not fit the device's contract document: nothing was
   *   sent), and what the device answers: VALIDATION_FAILED, TIMEOUT, INTERNAL, …
   */
  call(req: CommandRequest, allow: readonly string[]): Promise<unknown>
}

/** Stands for "no device named" in allow rules: only a wildcard device level matches it. */
const ANY_DEVICE = '\u0000any'

/** True when a rule list (`<device>/<service>/<version>/<command>`, MQTT wildcards) lets this call through. */
export function allowedBy(allow: readonly string[], req: Pick<CommandRequest, 'device' | 'service' | 'version' | 'command'>): boolean {
  const topic = `${req.device ?? ANY_DEVICE}/${req.service}/${req.version}/${req.command}`
  return allow.some((rule) => topicMatches(rule, topic))
}

const offers = (e: DeviceEntry, req: CommandRequest): 'yes' | 'no-service' | 'no-command' => {
  const s = e.services.find((x) => x.name === req.service && x.version === req.version)
  if (s === undefined) return 'no-service'
  return s.commands.includes(req.command) ? 'yes' : 'no-command'
}

/** Creates the router over the gateway's runtime (which sends the commands) and its registry. */
export function createCommandRouter(opts: {
  runtime: Runtime
  registry: Registry
  defaults?: Partial<CommandDefaults>
  pollMs?: number
  now?: () => number
  payloads?: PayloadCheck
  /**
   * Devices that were online when the gateway last stopped (or died), marked offline by its start:
   * for `reconnectGraceMs` from now, a command for one not back yet waits for it (within its
   * deadline) before the offline policy applies. Without it, every call in the first seconds
   * after a gateway restart, a RabbitMQ request delivered again among them, was DEVICE_OFFLINE
   * while the devices were reconnecting.
   */
  reconnecting?: readonly string[]
  /** Default 10 000 ms: a device's reconnect backoff is 1 s to 5 s. */
  reconnectGraceMs?: number
  /**
   * With authentication on: a device that cannot log in (not in the device table, or revoked) is
   * DEVICE_UNKNOWN at once, and a held call for one revoked while it waits stops waiting.
   */
  admission?: DeviceAdmission
}): CommandRouter {
  const defaults = { ...COMMAND_DEFAULTS, ...opts.defaults }
  const { runtime, registry, admission } = opts
  const payloads = opts.payloads ?? createPayloadCheck()
  const now = opts.now ?? Date.now
  const pollMs = opts.pollMs ?? 100
  const reconnecting = new Set(opts.reconnecting)
  const graceEnd = now() + (opts.reconnectGraceMs ?? RECONNECT_GRACE_MS)
  /** Whether `device` is one the gateway's start took offline and the grace for its return runs. */
  const awaited = (device: string): boolean => {
    if (reconnecting.size === 0) return false
    if (now() >= graceEnd) {
      reconnecting.clear()
      return false
    }
    return reconnecting.has(device) && registry.get(device)?.online !== true
  }

  const check = (req: CommandRequest, allow: readonly string[]): number => {
    for (const [what, value] of [['service', req.service], ['version', req.version], ['command', req.command], ...(req.device === undefined ? [] : [['device', req.device]])] as const) {
      if (typeof value !== 'string' || !isTopicSegment(value)) throw new OutpostError(ErrorCode.BAD_ARGUMENT, `${what} ${quoted(String(value), 64)} is not a name (1 to 128 characters, no '/', '+', '#')`)
    }
    if (!allowedBy(allow, req)) {
      throw new OutpostError(ErrorCode.NOT_AUTHORIZED, `this caller may not call ${commandName(req)}${req.device === undefined ? '' : ` on ${shown(req.device)}`}`)
    }
    const t = req.timeoutMs ?? defaults.timeoutMs
    if (!Number.isInteger(t) || t <= 0 || t > defaults.maxTimeoutMs) throw new OutpostError(ErrorCode.BAD_ARGUMENT, `timeout ${String(t)} ms is not accepted; expected a whole number from 1 to ${defaults.maxTimeoutMs}`)
    return t
  }

  /**
   * Checks the payload against the schema the device announced for the command, when the process
   * online now announced a contract document (an older runtime announces none, and a document of
   * an earlier process may no longer hold: then the device checks it, as always).
   * @throws VALIDATION_FAILED
   */
  const checkPayload = (req: CommandRequest, entry: DeviceEntry): void => {
    const contract = registry.contract(entry.device)
    if (contract === undefined || contract.instance !== entry.instance) return
    const service = contract.document.services.find((s) => s.name === req.service && s.version === req.version)
    if (service === undefined || !Object.hasOwn(service.commands, req.command)) return
    payloads.check(service.commands[req.command]!.payload, contract.document.dialect, req.payload, `payload of ${req.service}.${req.command} for ${entry.device}`)
  }

  /** Waits one poll (less when the deadline is nearer). @throws CANCELLED once the caller has gone */
  const pause = async (deadline: number, signal: AbortSignal | undefined): Promise<void> => {
    gone(signal)
    await new Promise((r) => setTimeout(r, Math.min(pollMs, Math.max(1, deadline - now()))))
    gone(signal)
  }

  /**
   * Waits until `device` is online or `deadline` passes; its entry then (online or not).
   * @throws DEVICE_UNKNOWN once the device is revoked or removed meanwhile
   */
  const waitOnline = async (device: string, deadline: number, signal: AbortSignal | undefined): Promise<DeviceEntry | undefined> => {
    let seen = admission?.version
    for (;;) {
      // The table is read again only after the revocation watch saw it change.
      if (admission !== undefined && admission.version !== seen) {
        seen = admission.version
        admission.check(device)
      }
      const e = registry.get(device)
      if (e?.online === true || now() >= deadline) return e
      await pause(deadline, signal)
    }
  }

  const named = async (req: CommandRequest & { device: string }, deadline: number): Promise<unknown> => {
    let entry = registry.get(req.device)
    if (entry === undefined) throw new OutpostError(ErrorCode.DEVICE_UNKNOWN, `no device ${shown(req.device)} is known to this gateway`, { details: { device: req.device } })
    // Online or not: a revoked device's connection lasts until the watch cuts it, and gets nothing meanwhile.
    admission?.check(req.device)
    // Back after the gateway's restart, most likely within seconds.
    if (!entry.online && awaited(req.device)) entry = (await waitOnline(req.device, Math.min(deadline, graceEnd), req.signal)) ?? entry
    if (!entry.online) {
      if ((req.offline ?? defaults.offline) === 'fail') throw offline(req.device)
      entry = await waitOnline(req.device, deadline, req.signal)
      if (entry?.online !== true) throw new OutpostError(ErrorCode.DEVICE_OFFLINE, `device ${shown(req.device)} did not come back before the deadline`, { retryable: true, details: { device: req.device } })
    }
    const has = offers(entry, req)
    if (has !== 'yes') throw noHandler(req, has)
    checkPayload(req, entry)
    return send(req, req.device, deadline)
  }

  // Who runs the command comes from the registry's index (in memory), not from a read of every
  // device's entry: this runs on every call that names no device, and again at each poll while
  // a held one waits.
  const anyDevice = async (req: CommandRequest, deadline: number): Promise<unknown> => {
    for (;;) {
      const who = registry.offering(req.service, req.version, req.command)
      // A device online in the index whose entry is gone by now (evicted in between) is passed over.
      const live = who.online.slice()
      while (live.length > 0) {
        const i = Math.floor(Math.random() * live.length)
        const chosen = registry.get(live[i]!)
        if (chosen?.online === true && admitted(chosen.device)) {
          checkPayload(req, chosen)
          return send(req, chosen.device, deadline)
        }
        live.splice(i, 1)
      }
      if (who.online.length === 0 && !who.offline) throw noHandler(req, who.service ? 'no-command' : 'no-service')
      const coming = [...reconnecting].some((d) => {
        const e = awaited(d) ? registry.get(d) : undefined
        return e !== undefined && offers(e, req) === 'yes'
      })
      if (((req.offline ?? defaults.offline) === 'fail' && !coming) || now() >= deadline) {
        throw new OutpostError(ErrorCode.DEVICE_OFFLINE, `every device that runs ${commandName(req)} is offline`, { retryable: true })
      }
      await pause(deadline, req.signal)
    }
  }

  /** Whether `device` may be given a command (a call that names none passes over one that is not). */
  const admitted = (device: string): boolean => {
    try {
      admission?.check(device)
      return true
    } catch {
      return false
    }
  }

  const send = async (req: CommandRequest, device: string, deadline: number): Promise<unknown> => {
    const left = deadline - now()
    if (left <= 0) throw new OutpostError(ErrorCode.TIMEOUT, `no time left to call ${shown(req.service)}.${shown(req.command)}`, { retryable: true })
    try {
      gone(req.signal)
      const reply = runtime.invoke({ service: req.service, version: req.version, command: req.command }, req.payload, { device, timeoutMs: left, ...(req.traceparent === undefined ? {} : { traceparent: req.traceparent }) })
      return await (req.signal === undefined ? reply : untilGone(reply, req.signal))
    } catch (err) {
      // The runtime's word for a named device that went away in between; or, just after a
      // restart, one the registry saw come back before the runtime did: tried again shortly.
      if (isOutpostError(err, ErrorCode.SERVICE_UNREACHABLE)) {
        if (reconnecting.has(device) && now() < Math.min(graceEnd, deadline - pollMs)) {
          await pause(deadline, req.signal)
          return send(req, device, deadline)
        }
        throw offline(device)
      }
      // Codes that only the gateway gives (a device is not busy with the gateway's calls, nor
      // offline while it answers): a device answering with one is not believed, since a caller
      // would take it for the gateway's word (a 401, a DEVICE_OFFLINE to try again).
      if (isOutpostError(err) && GATEWAY_ONLY.has(err.code)) {
        throw new OutpostError(ErrorCode.INTERNAL, `device ${shown(device)} answered with ${err.code}, a code only the gateway gives (${err.message.slice(0, 200)})`, { details: { device, deviceCode: err.code } })
      }
      throw err
    }
  }

  let pending = 0
  return {
    async call(req, allow) {
      const timeoutMs = check(req, allow)
      if (pending >= defaults.maxPending) {
        throw new OutpostError(ErrorCode.GATEWAY_BUSY, `the gateway holds ${defaults.maxPending} command calls already (commands.maxPending); try again later`, { retryable: true, details: { maxPending: defaults.maxPending } })
      }
      const at = now()
      // A send time in the future (the caller's clock ahead) is not trusted: the deadline counts from now.
      const deadline = (req.sentAt !== undefined && req.sentAt <= at ? req.sentAt : at) + timeoutMs
      if (deadline <= at) {
        // Not retryable: sent again as it is, it fails again (a caller whose clock is behind the gateway's fails every time).
        throw new OutpostError(ErrorCode.TIMEOUT, `the request's deadline passed before the gateway took it: sent ${at - req.sentAt!} ms ago by its timestamp, with a timeout of ${timeoutMs} ms; nothing was sent to a device (if it was sent just now, the caller's clock is behind the gateway's)`, { details: { sentAt: req.sentAt, timeoutMs } })
      }
      pending++
      try {
        return await (req.device === undefined ? anyDevice(req, deadline) : named(req as CommandRequest & { device: string }, deadline))
      } finally {
        pending--
      }
    },
  }
}

/** @throws CANCELLED when the caller has gone */
const gone = (signal: AbortSignal | undefined): void => {
  if (signal?.aborted === true) throw new OutpostError(ErrorCode.CANCELLED, 'the caller has gone')
}

/** `p`, or CANCELLED as soon as `signal` aborts (what `p` comes to then is dropped). */
function untilGone<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new OutpostError(ErrorCode.CANCELLED, 'the caller has gone'))
    if (signal.aborted) return onAbort()
    signal.addEventListener('abort', onAbort, { once: true })
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort)
        resolve(v)
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(e)
      },
    )
  })
}

/** A command as its messages name it, `service@version.command` (caller-given names, shown escaped). */
const commandName = (req: Pick<CommandRequest, 'service' | 'version' | 'command'>): string => `${shown(req.service)}@${shown(req.version)}.${shown(req.command)}`

const offline = (device: string): OutpostError => new OutpostError(ErrorCode.DEVICE_OFFLINE, `device ${shown(device)} is offline`, { retryable: true, details: { device } })

const noHandler = (req: CommandRequest, why: 'no-service' | 'no-command'): OutpostError =>
  new OutpostError(
    ErrorCode.NO_HANDLER,
    why === 'no-service'
      ? req.device === undefined
        ? `no device announces service ${shown(req.service)}@${shown(req.version)}`
        : `device ${shown(req.device)} does not announce service ${shown(req.service)}@${shown(req.version)}`
      : `service ${shown(req.service)}@${shown(req.version)}${req.device === undefined ? '' : ` on ${shown(req.device)}`} has no command ${shown(req.command)}`,
    { details: { service: req.service, version: req.version, command: req.command, ...(req.device === undefined ? {} : { device: req.device }) } },
  )

/** The HTTP status of a command's error code (NATS and RabbitMQ replies carry the code itself). */
export function statusOf(code: string): 400 | 403 | 404 | 422 | 500 | 502 | 503 | 504 {
  switch (code) {
    case ErrorCode.BAD_ARGUMENT:
    case ErrorCode.INVALID_TOPIC_LEVEL:
      return 400
    case ErrorCode.NOT_AUTHORIZED:
      return 403
    case ErrorCode.DEVICE_UNKNOWN:
    case ErrorCode.NO_HANDLER:
      return 404
    case ErrorCode.VALIDATION_FAILED:
      return 422
    case ErrorCode.DEVICE_OFFLINE:
    case ErrorCode.GATEWAY_BUSY:
    case ErrorCode.SERVICE_UNREACHABLE:
    case ErrorCode.BRIDGE_UNAVAILABLE:
    case ErrorCode.BRIDGE_CLOSED:
      return 503
    case ErrorCode.TIMEOUT:
      return 504
    case ErrorCode.INTERNAL:
    case ErrorCode.FRAME_TOO_LARGE:
      return 502
    default:
      return 500
  }
}
