import type { Logger } from 'pino'
import { errorMessage } from '../../runtime/errors.js'
import { createLogLimiter, type LogLimiter } from '../../runtime/log-limiter.js'
import type { DeviceDatabase } from '../../runtime/stores/sqlite/index.js'
import { isTopicSegment } from '../../runtime/topic-level.js'
import { createEnvelopeCodec } from '../../runtime/wire/codec.js'
import type { PresencePayload } from '../../runtime/wire/envelope.js'
import { DEFAULT_TOPIC_PREFIX } from '../../runtime/wire/topics.js'
import { createContractStore, type ContractStats, type DeviceContract } from './contracts.js'
import { createLiveness, type Known } from './liveness.js'
import { createOfferIndex, type CommandOffers } from './offers.js'
import { createRegistryStore } from './registry-store.js'
import { parseServices, servicesOf, type ServiceEntry } from './services.js'

export type { ContractStats, DeviceContract } from './contracts.js'
export type { CommandOffers } from './offers.js'
export type { ServiceEntry } from './services.js'

/** What the gateway knows of one device, from its retained presence (birth / last will). */
export interface DeviceEntry extends Known {
  device: string
  services: ServiceEntry[]
}

/** Frames `observe` took and the ones it ignored, by reason. */
export interface RegistryStats {
  /** Frames that changed or confirmed a device's entry. */
  recorded: number
  /**
   * Frames ignored, by reason: `topic` (not `<prefix>/<device>/status`), `malformed` (not an
   * envelope, or over the frame limit), `kind` (an envelope but no presence), `sender` (its src
   * is not the topic's device), `payload` (no `online` flag, or an instance id that is too long),
   * `stale` (the offline presence of a process the device has since replaced), `full` (a new
   * device while `maxDevices` are known and none of them is offline).
   */
  ignored: Record<string, number>
  /** Contract documents (`<prefix>/<device>/contract`) kept and ignored. */
  contracts: ContractStats
}

/** The fleet registry, kept in the gateway database (survives restarts). */
export interface Registry {
  /**
   * Takes a frame published on `<prefix>/<device>/status` (an empty one: the device is gone) or on
   * `<prefix>/<device>/contract` (the device's contract document; an empty one clears it). Never throws.
   */
  observe(topic: string, payload: Uint8Array, at: number): void
  /**
   * The broker every device was connected to stopped (a gateway start, a drill): no device is
   * online until it announces itself again on the broker that replaces it.
   */
  offlineAll(at: number): void
  /** Every device known, by id. */
  list(): DeviceEntry[]
  get(device: string): DeviceEntry | undefined
  /**
   * The contract document a device announced last, or undefined. It belongs to the process in its
   * `instance`: when that is not the instance of the device's presence, it is stale.
   */
  contract(device: string): DeviceContract | undefined
  /**
   * Who announces a command, from an index kept in memory (nothing is read from the database):
   * `online`, the devices online now that announce `command` of `service@version`, in no
   * particular order; `offline`, whether a device offline announces it; `service`, whether any
   * device known announces `service@version` at all (with that command or not).
   */
  offering(service: string, version: string, command: string): CommandOffers
  /** Devices online now (kept in memory). */
  online(): number
  /** Devices known (kept in memory). */
  size(): number
  stats(): RegistryStats
  /** Writes what is still pending; observes nothing more. */
  close(): void
}

export interface RegistryOptions {
  /** Topic prefix of the wire layout (default `ob`). */
  prefix?: string
  /** Devices not recorded (the gateway's own clients). */
  exclude?: readonly string[]
  /**
   * Most devices kept (default 10 000). A new device beyond it takes the place of the one offline
   * the longest; when every device known is online, it is ignored (`full`). A client that
   * publishes statuses under made-up ids (possible when authentication is off) cannot grow the table.
   */
  maxDevices?: number
  /**
   * Longest wait before what presence changed is written, ms (default 50). Writes are gathered
   * into one transaction per wait, one row per device, so a flood of statuses costs a commit per
   * wait, not one per frame.
   */
  flushMs?: number
  /** Ignored frames and failed writes, at most one line a minute per reason. */
  log?: Logger
  /** Largest contract document kept, bytes (default MAX_CONTRACT_BYTES, 256 KiB); a larger one is ignored (`too-large`). */
  maxContractBytes?: number
}

/** Longest runtime version and instance id kept. */
const MAX_SHORT_TEXT = 128

/**
 * Creates the registry over the gateway database's `registry` table, loading what it holds.
 * The gateway feeds it every publish on a status topic; the `outpost devices` commands read it
 * beside a running gateway.
 */
export function createRegistry(database: DeviceDatabase, opts: RegistryOptions = {}): Registry {
  const prefix = opts.prefix ?? DEFAULT_TOPIC_PREFIX
  const exclude = new Set(opts.exclude ?? [])
  const maxDevices = opts.maxDevices ?? 10_000
  const flushMs = opts.flushMs ?? 50
  const limiter: LogLimiter | undefined = opts.log === undefined ? undefined : createLogLimiter(opts.log)
  const codec = createEnvelopeCodec()

  const devices = createLiveness()
  const stats: Omit<RegistryStats, 'contracts'> = { recorded: 0, ignored: {} }
  let closed = false
  const contracts = createContractStore(database, { known: (device) => devices.has(device), maxBytes: opts.maxContractBytes, flushMs, log: opts.log })
  const offers = createOfferIndex((device) => devices.get(device)?.online === true)
  const store = createRegistryStore(database, { entry: (device) => devices.get(device), flushMs, limiter })
  for (const [device, k] of store.load()) devices.add(device, k)

  const ignore = (reason: string, topic: string): void => {
    stats.ignored[reason] = (stats.ignored[reason] ?? 0) + 1
    limiter?.warn(`presence ${reason}`, { reason, topic: topic.slice(0, 200) }, 'status frame not recorded in the registry')
  }
  const changed = (device: string, services?: ServiceEntry[]): void => {
    if (services !== undefined) offers.index(device, services)
    store.changed(device, services)
  }
  /** Makes room for one more device: false when every device known is online. */
  const room = (): boolean => {
    if (devices.size() < maxDevices) return true
    const oldest = devices.evictOldestOffline()
    if (oldest === undefined) return false
    store.forget(oldest)
    offers.unindex(oldest)
    contracts.forget(oldest)
    return true
  }

  /** The device a topic `<prefix>/<device>/<last>` names, or undefined when the topic is not that. */
  const deviceOf = (topic: string, last: string): string | undefined => {
    if (!topic.startsWith(`${prefix}/`) || !topic.endsWith(last)) return undefined
    const device = topic.slice(prefix.length + 1, topic.length - last.length)
    return isTopicSegment(device) ? device : undefined
  }

  const record = (topic: string, device: string, payload: Uint8Array, at: number): void => {
    const k = devices.get(device)
    if (payload.length === 0) {
      // The retained presence was cleared: the device is gone (its row stays).
      if (k === undefined) return
      k.lastSeen = at
      devices.setOnline(device, k, false, at)
      stats.recorded++
      return changed(device)
    }
    const decoded = codec.decode(payload)
    if (!decoded.ok) return ignore('malformed', topic)
    const env = decoded.envelope
    if (env.kind !== 'presence') return ignore('kind', topic)
    if (env.src !== device) return ignore('sender', topic)
    const p = env.payload as Partial<PresencePayload> | undefined
    if (typeof p !== 'object' || p === null || typeof p.online !== 'boolean' || typeof env.inst !== 'string' || env.inst.length > MAX_SHORT_TEXT) return ignore('payload', topic)
    // The late last will of a process the device has since replaced says nothing of the live one.
    if (!p.online && k?.online === true && k.instance !== env.inst) return ignore('stale', topic)
    const services = servicesOf(p.services)
    const runtime = typeof p.runtime === 'string' && p.runtime.length <= MAX_SHORT_TEXT ? p.runtime : undefined
    let entry = k
    if (entry === undefined) {
      if (!room()) return ignore('full', topic)
      entry = { online: p.online, firstSeen: at, lastSeen: at, changedAt: at }
      devices.add(device, entry)
      store.revive(device)
    }
    entry.lastSeen = at
    devices.setOnline(device, entry, p.online, at)
    contracts.known(device)
    entry.instance = env.inst
    if (runtime !== undefined) entry.runtime = runtime
    else if (p.online) delete entry.runtime
    stats.recorded++
    // An offline presence that names no service (an older runtime's) leaves the known ones.
    changed(device, k === undefined || p.online || services.length > 0 ? services : undefined)
  }

  const entryOf = (device: string, k: Known, services: ServiceEntry[]): DeviceEntry => {
    const e: DeviceEntry = { device, online: k.online, firstSeen: k.firstSeen, lastSeen: k.lastSeen, changedAt: k.changedAt, services }
    if (k.instance !== undefined) e.instance = k.instance
    if (k.runtime !== undefined) e.runtime = k.runtime
    return e
  }
  // The index of what the devices loaded above announce: their services are read this once.
  for (const [device, json] of store.services()) if (devices.has(device)) offers.index(device, parseServices(json))

  return {
    observe(topic, payload, at) {
      if (closed) return
      const ofContract = deviceOf(topic, '/contract')
      if (ofContract !== undefined) {
        if (!exclude.has(ofContract)) contracts.observe(topic, ofContract, payload, at)
        return
      }
      const device = deviceOf(topic, '/status')
      if (device === undefined) return ignore('topic', topic)
      if (exclude.has(device)) return
      try {
        record(topic, device, payload, at)
      } catch (err) {
        // Nothing above should throw; a frame that finds a way is ignored, never the gateway's end.
        limiter?.warn('observe', { err: errorMessage(err) }, 'status frame not recorded in the registry')
      }
    },
    offlineAll(at) {
      for (const [device, k] of devices.entries()) {
        if (!k.online) continue
        devices.setOnline(device, k, false, at)
        changed(device)
      }
    },
    list() {
      const services = store.services()
      const out: DeviceEntry[] = []
      for (const [device, k] of devices.entries()) out.push(entryOf(device, k, parseServices(services.get(device))))
      return out.sort((a, b) => (a.device < b.device ? -1 : a.device > b.device ? 1 : 0))
    },
    get(device) {
      const k = devices.get(device)
      if (k === undefined) return undefined
      return entryOf(device, k, parseServices(store.servicesOf(device)))
    },
    contract: (device) => contracts.get(device),
    offering: (service, version, command) => offers.offering(service, version, command),
    online: () => devices.online(),
    size: () => devices.size(),
    stats: () => ({ recorded: stats.recorded, ignored: { ...stats.ignored }, contracts: contracts.stats() }),
    close() {
      if (closed) return
      closed = true
      store.close()
      contracts.close()
    },
  }
}
