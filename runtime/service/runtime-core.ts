import { pino, type Logger } from 'pino'
import { createLogLimiter, type LogLimiter } from '../log-limiter.js'
import { nodeCrypto } from '../lazy-builtin.js'
import { createMessenger, type InboundMessage, type Messenger } from '../messaging/messenger.js'
import { systemClock, type Clock } from '../ports/clock.js'
import type { StateStore } from '../ports/state-store.js'
import { createMessageIdFactory } from '../wire/message-id.js'
import { hostServices, type HostedService } from './hosted-service.js'
import type { RuntimeStats, RuntimeWithStoresOptions } from './runtime-api.js'

/**
 * What the runtime's rooms (calling, serving, events, lifecycle) send and receive envelopes
 * through. The one place that names the link's type: the rooms import this alias.
 */
export type Link = Messenger

/** A message the link hands to a subscription's handler (decoded envelope, topic, flags). */
export type LinkMessage = InboundMessage

/** The runtime's own counters (reported by `Runtime.stats()`, with the rejections and the bridge's). */
export type RuntimeCounters = Omit<RuntimeStats, 'rejections' | 'bridge'>

/**
 * What every room of one runtime shares: its link, identity, time, logs, counters, hosted
 * services and the work in flight. Small on purpose: anything only one room needs stays there.
 */
export interface RuntimeCore {
  /** The link to the broker (and to the other devices); obtained once, here. */
  readonly link: Link
  readonly deviceId: string
  /** This process's instance id (a restart of the device is a new instance). */
  readonly inst: string
  /** The one time of this runtime: envelopes, deadlines, discovery, schedules, queues, leases, the outbox pump. */
  readonly clock: Clock
  /** `clock.now`, bound: the current time, epoch ms (a shorthand for the hot paths, not a second clock). */
  readonly now: () => number
  /** New message ids. */
  readonly ids: () => string
  /** The runtime's logger, bound to the device. */
  readonly log: Logger
  /** Trouble caused by a message (one per frame under a flood): logged at most once a minute per reason. */
  readonly rejections: LogLimiter
  readonly counters: RuntimeCounters
  /** Values for the resources services declare. */
  readonly resources: Record<string, unknown>
  /** Where `ctx.state` and the schedules' last occurrences live. */
  readonly stateStore: StateStore
  /** Hosted services by `name@version`. */
  readonly hosted: ReadonlyMap<string, HostedService>
  /** Hosted services by name, then version (looked up per message, without building a key). */
  readonly hostedBy: ReadonlyMap<string, ReadonlyMap<string, HostedService>>
  /** Handlers in flight (commands and events), awaited at stop. */
  readonly running: Set<Promise<unknown>>
  /** Signals handed to handlers, aborted at stop. */
  readonly controllers: Set<AbortController>
  /** Set once `stop` began: no new work is taken. */
  stopping: boolean
}

/** Builds the shared core of a runtime from its options (its stores given). @throws INVALID_CONFIG when a service is registered twice */
export function createRuntimeCore(opts: RuntimeWithStoresOptions): RuntimeCore {
  const deviceId = opts.bridge.deviceId
  const clock = opts.clock ?? systemClock
  const now = clock.now.bind(clock)
  const baseLog = opts.logger ?? pino({ level: 'silent' })
  const log = baseLog.bindings().device === undefined ? baseLog.child({ device: deviceId }) : baseLog
  // The envelope layer over the frames-only bridge the entry point picked.
  const link: Link = createMessenger({ ...opts.messaging, bridge: opts.bridge, clock, logger: log })
  const stateStore = opts.stateStore
  const services = hostServices(opts.services ?? [], { deviceId, log, stateStore })
  return {
    link,
    deviceId,
    inst: link.instanceId,
    clock,
    now,
    ids: createMessageIdFactory(now),
    log,
    rejections: createLogLimiter(log, { clock }),
    counters: {
      commandsHandled: 0, commandsFailed: 0, duplicateCommands: 0, expiredCommands: 0, eventsHandled: 0, eventsRejected: 0, duplicateEvents: 0, eventsBound: 0,
      eventsNotStored: 0, deadLettersNotKept: 0, deadLettersDigested: 0,
    },
    resources: opts.resources ?? {},
    stateStore,
    hosted: services.all,
    hostedBy: services.byName,
    running: new Set(),
    controllers: new Set(),
    stopping: false,
  }
}

/** Tracks a handler in flight until it settles (stop waits for what is tracked). */
export function track(core: RuntimeCore, p: Promise<unknown>): void {
  core.running.add(p)
  void p.finally(() => core.running.delete(p))
}

/** A child of a W3C trace context: same trace, a new span id. */
export function childTrace(traceparent: string | undefined): string | undefined {
  if (traceparent === undefined) return undefined
  const parts = traceparent.split('-')
  if (parts.length !== 4) return traceparent
  return `${parts[0]}-${parts[1]}-${nodeCrypto().randomBytes(8).toString('hex')}-${parts[3]}`
}
