import type { Schema } from '../contract/contract.js'
import type { SubscriptionSpec } from '../contract/service.js'
import { ErrorCode, OutpostError, errorMessage } from '../errors.js'
import { createOutboxPump, type OutboxPump } from '../outbox/outbox-pump.js'
import type { Outbox, OutboxStream } from '../ports/outbox.js'
import type { QueueStore } from '../ports/queue-store.js'
import { createEnvelopeCodec } from '../wire/codec.js'
import { ENVELOPE_VERSION, type Envelope } from '../wire/envelope.js'
import { topicMatches } from '../wire/topics.js'
import { safeParse } from './compiled-schema.js'
import { MessageContext, type ContextDeps } from './handler-context.js'
import type { HostedService } from './hosted-service.js'
import type { RecentMap } from '../recent-map.js'
import { childTrace, track, type LinkMessage, type RuntimeCore } from './runtime-core.js'
import { toValidationIssues, validate } from './validation.js'
import { leaveUnacknowledged } from '../ports/bridge.js'

/** What publishing events needs besides the core. */
export interface EventsDeps {
  core: RuntimeCore
  /** What subscription handlers' contexts reach. */
  contexts: ContextDeps
  /** Where emitted events wait for the broker; without one they are published directly. */
  outbox: Outbox | undefined
  /** Most outbox messages awaiting the broker's acknowledgement at once. */
  outboxWindow: number | undefined
  /** The store whose transaction an emitted event and the jobs it binds share. */
  queueStore: QueueStore
}

/**
 * This runtime's own subscriptions and bindings. With an outbox, an event a service emits
 * reaches them at once, without the broker (so a device's chains keep running offline); the
 * copy the broker brings back later is dropped as a duplicate.
 */
export interface LocalReceiver {
  filter: string
  /** A subscription: handed the event after it was committed. */
  event?: (msg: LinkMessage) => void | Promise<void>
  /** A binding: enqueues its job in the same transaction as the event's outbox entry. */
  bind?: (env: Envelope) => void
}

/** Events of hosted services: emitted through the outbox (or the link), received by subscriptions. */
export interface Events {
  /** Checks and emits an event of `svc`. Rejects with NO_HANDLER, VALIDATION_FAILED, OUTBOX_FULL, STORE_FAILED, BRIDGE_UNAVAILABLE. */
  emit(svc: HostedService, event: string, payload: unknown, parent?: Envelope, correlation?: string): Promise<void>
  /** The handler of one subscription's broker messages (and of this runtime's own events). */
  onEvent(svc: HostedService, subName: string, sub: SubscriptionSpec, seen: RecentMap<true>): (msg: LinkMessage) => void | Promise<void>
  /** Registers a subscription or binding of this runtime for the events it emits itself. */
  addLocalReceiver(r: LocalReceiver): void
  /** Stores a queue's result event (its payload built by the runtime from checked values) in `stream`. @throws OUTBOX_FULL, STORE_FAILED */
  publishResult(svc: HostedService, event: string, payload: unknown, job: { traceparent?: string; correlationId?: string }, stream: OutboxStream): void
  /** Settlements and their result events committed: deliver them. */
  afterCommit(): void
  /** Starts delivering the outbox (called once, at start). */
  startPump(): void
  /** Stops delivering the outbox; what it holds stays for the next start. Resolves once publishes in flight settled or after `ms`. */
  stopPump(ms: number): Promise<void>
}

/** Creates the events room of a runtime. */
export function createEvents(deps: EventsDeps): Events {
  const { core, contexts, outbox, queueStore } = deps
  const { link, deviceId, inst, now, ids, counters, rejections } = core
  // The frame limit of the bridge the outbox sends through: an event larger than it is refused at emit.
  const outboxCodec = outbox === undefined ? undefined : createEnvelopeCodec({ maxFrameBytes: link.transport.maxPayloadBytes })
  let pump: OutboxPump | undefined

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

  /**
   * Commits an event to the outbox (the pump delivers it, in order, when connected), in `stream`:
   * `events`, or `results` for a job's outcome. @throws OUTBOX_FULL, STORE_FAILED
   */
  const appendToOutbox = (env: Envelope, topic = link.topics.topicOf(env), stream: OutboxStream = 'events'): void => {
    outbox!.append({ stream, topic, frame: encodeEvent(env), retain: false })
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

  const emit = (svc: HostedService, event: string, payload: unknown, parent?: Envelope, correlation?: string): Promise<void> => {
    const schema = svc.def.contract.events[event] as Schema | undefined
    if (schema === undefined || svc.def.contract.resultEvents.has(event)) {
      return Promise.reject(new OutpostError(ErrorCode.NO_HANDLER, `service ${svc.def.contract.name} declares no event "${event}" it may emit`))
    }
    let env: Envelope
    try {
      const value = validate(schema, payload, `event ${svc.def.contract.name}.${event}`)
      // Correlation: a schedule's occurrence id, the command this event was emitted for, or whatever the parent carried.
      env = eventEnvelope(svc, event, value, childTrace(parent?.traceparent), correlation ?? (parent?.kind === 'command' ? parent.id : parent?.corr))
      if (outbox === undefined) return link.publish(env)
      const topic = link.topics.topicOf(env)
      const receivers = receiversOf(topic)
      if (receivers.length === 0) appendToOutbox(env, topic)
      else {
        // The event's outbox entry and the jobs it binds commit together: the device transaction
        // that the queue store (and, on one device database, the outbox) was built with.
        queueStore.transaction.run(() => {
          appendToOutbox(env, topic)
          for (const r of receivers) r.bind?.(env)
        })
        pump?.kick()
        const msg: LinkMessage = { topic, envelope: env, retained: false, redelivered: false }
        // Handled here and now, nothing to acknowledge: a subscription that is stopping just drops it.
        for (const r of receivers) r.event?.(msg)?.catch(() => undefined)
        return Promise.resolve()
      }
    } catch (err) {
      return Promise.reject(err)
    }
    pump?.kick()
    return Promise.resolve()
  }

  const onEvent = (svc: HostedService, subName: string, sub: SubscriptionSpec, seen: RecentMap<true>) => (msg: LinkMessage): void | Promise<void> => {
    const env = msg.envelope
    if (env.kind !== 'event') return
    // Stopping: not handled, and not acknowledged either, so the broker sends it again to the next start.
    if (core.stopping) return leaveUnacknowledged()
    // The sender's id (src is the topic's sender level): another device that sent an event under
    // the next id of the one subscribed to would otherwise have that one's event dropped.
    const key = `${env.src}/${env.id}`
    if (seen.has(key)) {
      counters.duplicateEvents++
      return
    }
    seen.set(key, true)
    const parsed = safeParse(sub.schema, env.payload)
    if (!parsed.success) {
      counters.eventsRejected++
      rejections.warn(`event-invalid:${svc.def.contract.name}/${subName}`, { service: svc.def.contract.name, subscription: subName, msgId: env.id, issues: toValidationIssues(parsed.issues).slice(0, 5) }, 'dropped an event that fails the subscription schema')
      return
    }
    const ctx = new MessageContext(contexts, svc, env, subName)
    track(core, (async () => {
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
    })())
  }

  // Result events of a runtime without an outbox: published once their settlement committed.
  let unpublished: Envelope[] = []
  const afterCommit = (): void => {
    pump?.kick()
    if (unpublished.length === 0) return
    const envs = unpublished
    unpublished = []
    for (const env of envs) {
      link.publish(env).catch((err: unknown) => core.log.warn({ err: errorMessage(err), event: env.name }, 'result event not published (no outbox)'))
    }
  }

  return {
    emit,
    onEvent,
    addLocalReceiver: (r) => {
      localReceivers.push(r)
    },
    publishResult: (svc, event, payload, job, stream) => {
      // Built by the runtime from checked values: not validated again.
      const env = eventEnvelope(svc, event, payload, childTrace(job.traceparent), job.correlationId)
      if (outbox === undefined) unpublished.push(env)
      else appendToOutbox(env, undefined, stream)
    },
    afterCommit,
    startPump: () => {
      if (outbox !== undefined) pump = createOutboxPump({ outbox, bridge: link.transport, window: deps.outboxWindow, log: core.log, clock: core.clock })
    },
    stopPump: async (ms) => {
      await pump?.stop(ms)
    },
  }
}

