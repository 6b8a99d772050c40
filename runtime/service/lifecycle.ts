import { ErrorCode, OutpostError, errorMessage, isOutpostError } from '../errors.js'
import type { Outbox } from '../ports/outbox.js'
import type { QueueRunner } from '../queue/queue-runner.js'
import type { Scheduler } from '../schedule/scheduler.js'
import { ENVELOPE_VERSION, type PresencePayload } from '../wire/envelope.js'
import { createContractAnnouncer } from './contract-document.js'
import type { Directory } from './directory.js'
import { presencePayload } from '../messaging/presence.js'
import type { Events } from './events.js'
import { createRecentMap } from '../recent-map.js'
import type { RuntimeCore } from './runtime-core.js'
import type { RuntimeStatsReport, StartOptions } from './runtime-api.js'
import type { Serving } from './serving.js'
import type { ServiceQueues } from '../queue/service-queues.js'

/** What starting and stopping a runtime needs: the core and every room it starts and stops. */
export interface LifecycleDeps {
  core: RuntimeCore
  directory: Directory
  serving: Serving
  events: Events
  queues: ServiceQueues
  runner: QueueRunner
  scheduler: Scheduler
  outbox: Outbox | undefined
  /** How many recent event ids each subscription remembers to drop repeats. */
  inboxSize: number
  /** What becomes of jobs still running when stop's grace ends. */
  jobsOnStop: 'release' | 'expire'
}

/** Start, stop and stats of a runtime (`Runtime.start`, `.stop`, `.stats`). */
export interface Lifecycle {
  start(opts?: StartOptions): Promise<void>
  stop(opts?: { drainMs?: number }): Promise<void>
  stats(): RuntimeStatsReport
}

/** Creates the lifecycle of a runtime: subscriptions, presence, status handling, drain at stop. */
export function createLifecycle(deps: LifecycleDeps): Lifecycle {
  const { core, directory, serving, events, queues, runner, scheduler, outbox } = deps
  const { link, deviceId, inst, hosted, log } = core
  let started = false
  // Publishes our retained presence (set in start); never rejects.
  let announce = (): Promise<void> => Promise.resolve()
  let reannouncing = false
  // The JSON Schemas of what we serve, retained beside our presence (built after start, once).
  const contract = createContractAnnouncer(core)

  const presence = (): PresencePayload =>
    presencePayload(
      true,
      [...hosted.values()].map(({ def }) => ({
        name: def.contract.name,
        version: def.contract.version,
        commands: Object.keys(def.contract.commands),
        events: Object.keys(def.contract.events),
        queues: Object.keys(def.contract.queues),
        schedules: Object.keys(def.schedules),
      })),
    )

  /** Keeps the directory in step with the presence of every device (ours included). */
  const subscribePresence = (): Promise<unknown> =>
    link.subscribe(
      link.topics.presenceFilter(),
      (msg) => {
        const env = msg.envelope
        const p = env.payload as PresencePayload | undefined
        if (env.kind !== 'presence' || typeof p !== 'object' || p === null || typeof p.online !== 'boolean' || !Array.isArray(p.services ?? [])) return
        // The directory bounds what an offline presence declares as it does an online one.
        directory.update(env.src, env.inst, { online: p.online, services: p.services ?? [] })
        // A device that comes back may have missed commands sent while it was away (a broker
        // restart loses them); send ours again, its inbox keeps them from running twice.
        if (p.online && !msg.retained && env.src !== deviceId) link.resendPending(env.src)
      },
      {
        // Someone cleared a device's retained presence (an empty retained message): it is gone.
        // Ours is announced again while we run, so only a presence nobody stands behind stays cleared.
        onCleared: (device) => {
          if (device !== deviceId) directory.clear(device)
          else if (!core.stopping && link.status.type === 'connected' && !reannouncing) {
            // One at a time: a flood of empty frames gets no more publishes than round trips.
            reannouncing = true
            void announce().finally(() => (reannouncing = false))
          }
        },
      },
    )

  /** Subscribes each hosted service's commands, subscriptions and bindings. */
  const subscribeServices = async (): Promise<void> => {
    for (const svc of hosted.values()) {
      const c = svc.def.contract
      await link.subscribe(link.topics.commandFilter(deviceId, c.name, c.version), serving.onCommand)
      for (const [subName, sub] of Object.entries(svc.def.subscriptions)) {
        const filter = link.topics.eventFilter({ device: sub.device, service: sub.service, version: sub.version, event: sub.event })
        const handler = events.onEvent(svc, subName, sub, createRecentMap<true>(deps.inboxSize))
        events.addLocalReceiver({ filter, event: handler })
        await link.subscribe(filter, handler)
      }
      for (const [name, b] of Object.entries(svc.def.bindings)) {
        const filter = link.topics.eventFilter({ device: b.device, service: b.service, version: b.version, event: b.event })
        events.addLocalReceiver({ filter, bind: queues.bindLocally(svc, name, b) })
        await link.subscribe(filter, queues.onBound(svc, name, b))
      }
    }
  }

  /**
   * Announces on every (re)connect: the broker may have lost the retained birth or sent our will.
   * The contract document goes out once, and again only when the broker kept no session for us.
   */
  // `connected to the broker`, once, for a runtime that starts connecting in the background:
  // when its first connection is up, at start or (for one that started offline) later.
  let sayConnected: (() => void) | undefined
  const followStatus = (): void => {
    let stale = false
    link.onStatus((s) => {
      // Presence that arrives on the next connection (retained, or held in our session) starts a new generation.
      if (s.type === 'disconnected' || s.type === 'reconnecting') {
        directory.markStale()
        stale = true
      }
      if (s.type === 'connected') {
        sayConnected?.()
        // The bridge asks for the retained presence again on every connect, session or not;
        // whoever has not announced itself again by now is no longer known to be alive (it
        // stays known: a call to its services is SERVICE_UNREACHABLE, and waits for its return).
        if (stale) directory.pruneStale()
        stale = false
        // The contract after the presence is acknowledged: the gateway records a device's contract only once it knows the device.
        const sessionPresent = s.sessionPresent
        void announce().then(() => contract.connected(sessionPresent))
      }
    })
  }

  return {
    async start(sopts) {
      if (started) return
      started = true
      for (const { def } of hosted.values()) {
        for (const name of Object.keys(def.resources)) {
          if (!(name in core.resources)) {
            throw new OutpostError(ErrorCode.INVALID_CONFIG, `service ${def.contract.name} needs resource "${name}", which was not provided`)
          }
        }
      }
      // Our offline presence (last will, goodbye) names our services: whoever starts while we are
      // away knows them, and hears SERVICE_UNREACHABLE for them rather than NO_HANDLER.
      link.declareServices(presence().services)
      await subscribePresence()
      await subscribeServices()
      announce = (): Promise<void> =>
        link
          .publish({ v: ENVELOPE_VERSION, kind: 'presence', id: core.ids(), src: deviceId, inst, at: core.now(), payload: presence() }, { retain: true })
          .catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'presence not announced'))
      events.startPump()
      followStatus()
      const offline = (err: unknown): void => {
        if (isOutpostError(err, ErrorCode.NOT_AUTHORIZED)) log.error({ err: errorMessage(err) }, 'the broker refused a subscription at start; running offline and retrying')
        else log.warn({ err: errorMessage(err) }, 'broker unreachable at start; running offline and retrying')
      }
      if (sopts?.connectInBackground === true && sopts.waitForBroker !== true) {
        // Local work needs no broker: commands between our own services, schedules, queue
        // workers, and events (into the outbox, which the pump drains once connected; the
        // presence goes out on every connect, see followStatus). They start now; the connection
        // is begun on the next turn of the event loop, so that what the caller does once this
        // resolves (a device's `ready` line) does not wait for the connection's set-up either.
        scheduler.start()
        runner.start()
        log.info({ services: [...hosted.keys()] }, 'runtime started')
        sayConnected = () => {
          sayConnected = undefined
          log.info('connected to the broker')
        }
        setImmediate(() => {
          link.connect().then(
            () => sayConnected?.(),
            (err: unknown) => {
              // A stop before the first connection closes the bridge under it: nothing to say.
              if (!core.stopping) offline(err)
            },
          )
        })
        return
      }
      try {
        await link.connect()
      } catch (err) {
        if (sopts?.waitForBroker === true) throw err
        offline(err)
        scheduler.start()
        runner.start()
        return
      }
      scheduler.start()
      runner.start()
      log.info({ services: [...hosted.keys()] }, 'runtime started')
    },
    stats: () => ({ ...core.counters, rejections: core.rejections.counts(), bridge: link.stats(), schedules: scheduler.stats(), outbox: outbox?.stats(), queues: runner.stats() }),
    async stop(sopts) {
      if (core.stopping) return
      core.stopping = true
      scheduler.stop()
      const drainMs = sopts?.drainMs ?? 5_000
      await Promise.all([
        // Workers get the same grace; their results go to the outbox before the pump stops.
        runner.stop({ graceMs: drainMs, onShutdown: deps.jobsOnStop }),
        Promise.race([Promise.all(core.running), new Promise((r) => setTimeout(r, drainMs).unref())]),
      ])
      for (const ac of core.controllers) ac.abort(new OutpostError(ErrorCode.CANCELLED, 'runtime is stopping'))
      // What the outbox still holds stays there for the next start; only publishes in flight are awaited.
      await events.stopPump(drainMs)
      await link.close({ drainMs })
      log.info('runtime stopped')
    },
  }
}
