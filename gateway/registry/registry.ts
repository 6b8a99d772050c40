import type { Logger } from 'pino'
import type { Statement } from 'better-sqlite3'
import { errorMessage } from '../../runtime/errors.js'
import { createLogLimiter, type LogLimiter } from '../../runtime/log-limiter.js'
import type { DeviceDatabase } from '../../runtime/stores/sqlite/index.js'
import { isTopicSegment } from '../../runtime/topic-level.js'
import { createEnvelopeCodec } from '../../runtime/wire/codec.js'
import type { PresencePayload, PresenceService } from '../../runtime/wire/envelope.js'
import { DEFAULT_TOPIC_PREFIX } from '../../runtime/wire/topics.js'
import { createContractStore, MAX_NAME_LENGTH, MAX_NAMES, MAX_SERVICES, type ContractStats, type DeviceContract } from './contracts.js'

export type { ContractStats, DeviceContract } from './contracts.js'

/** One service a device announced: its contract's names, as its presence carries them (queues and schedules absent from presence format 1). */
export type ServiceEntry = PresenceService

/** What the gateway knows of one device, from its retained presence (birth / last will). */
export interface DeviceEntry {
  device: string
  online: boolean
  instance?: string
  /** Runtime version the device announced. */
  runtime?: string
  firstSeen: number
  lastSeen: number
  /** When `online` last changed. */
  changedAt: number
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

/** What `Registry.offering` answers. */
export interface CommandOffers {
  online: string[]
  offline: boolean
  service: boolean
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

// Bounds on what a presence (untrusted) can make an entry hold (MAX_SERVICES, MAX_NAMES,
// MAX_NAME_LENGTH), as the devices' own directory has them, are shared with the contract store.
/** Longest runtime version and instance id kept. */
const MAX_SHORT_TEXT = 128

const isName = (s: unknown): s is string => typeof s === 'string' && s.length > 0 && s.length <= MAX_NAME_LENGTH

/** Up to MAX_NAMES distinct names of a list from a presence; anything else in it is skipped. */
function names(list: unknown): string[] {
  if (!Array.isArray(list)) return []
  const out = new Set<string>()
  for (const n of list) {
    if (out.size >= MAX_NAMES) break
    if (isName(n)) out.add(n)
  }
  return [...out]
}

/** The services of a presence as far as the bounds allow; an entry that names no service is skipped. */
function servicesOf(services: unknown): ServiceEntry[] {
  const out: ServiceEntry[] = []
  const seen = new Set<string>()
  for (const s of Array.isArray(services) ? (services as unknown[]) : []) {
    if (out.length >= MAX_SERVICES) break
    if (typeof s !== 'object' || s === null) continue
    const { name, version, commands, events, queues, schedules } = s as Record<string, unknown>
    if (!isName(name) || !isName(version) || seen.has(`${name}@${version}`)) continue
    seen.add(`${name}@${version}`)
    const entry: ServiceEntry = { name, version, commands: names(commands), events: names(events) }
    if (queues !== undefined) entry.queues = names(queues)
    if (schedules !== undefined) entry.schedules = names(schedules)
    out.push(entry)
  }
  return out
}

/** What is kept in memory of each device: all but its services. */
interface Known {
  online: boolean
  instance?: string
  runtime?: string
  firstSeen: number
  lastSeen: number
  changedAt: number
}

interface Row {
  device: string
  online: number
  instance: string | null
  runtime: string | null
  first_seen: number
  last_seen: number
  changed_at: number
}

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
  const { db } = database

  const known = new Map<string, Known>()
  // Devices offline, the one offline the longest first: the ones a new device may replace.
  const offline = new Set<string>()
  let onlineCount = 0
  const stats: Omit<RegistryStats, 'contracts'> = { recorded: 0, ignored: {} }
  // Written at the next flush: the entry, with its services when they changed (JSON).
  const pending = new Map<string, { services?: string }>()
  const deleted = new Set<string>()
  let timer: NodeJS.Timeout | undefined
  let closed = false
  const contracts = createContractStore(database, { known: (device) => known.has(device), maxBytes: opts.maxContractBytes, flushMs, log: opts.log })

  // Which devices announce which services and commands, kept with each change of a device's
  // services: the command router asks who runs a command on every call that names no device, and
  // reading (and parsing) every device's services for that cost as much as the fleet is large.
  const byService = new Map<string, Set<string>>()
  const byCommand = new Map<string, Set<string>>()
  // The keys of byService and byCommand each device is in.
  const indexed = new Map<string, string[]>()
  const serviceKey = (name: string, version: string): string => JSON.stringify([name, version])
  const commandKey = (name: string, version: string, command: string): string => JSON.stringify([name, version, command])
  const drop = (map: Map<string, Set<string>>, key: string, device: string): void => {
    const set = map.get(key)
    set?.delete(device)
    if (set?.size === 0) map.delete(key)
  }
  const add = (map: Map<string, Set<string>>, key: string, device: string): void => {
    let set = map.get(key)
    if (set === undefined) map.set(key, (set = new Set()))
    set.add(device)
  }
  const unindex = (device: string): void => {
    for (const key of indexed.get(device) ?? []) {
      drop(byService, key, device)
      drop(byCommand, key, device)
    }
    indexed.delete(device)
  }
  const index = (device: string, services: readonly ServiceEntry[]): void => {
    unindex(device)
    const keys: string[] = []
    for (const s of services) {
      const sk = serviceKey(s.name, s.version)
      add(byService, sk, device)
      keys.push(sk)
      for (const c of s.commands) {
        const ck = commandKey(s.name, s.version, c)
        add(byCommand, ck, device)
        keys.push(ck)
      }
    }
    if (keys.length > 0) indexed.set(device, keys)
  }

  for (const r of db.prepare('SELECT device, online, instance, runtime, first_seen, last_seen, changed_at FROM registry ORDER BY last_seen').all() as Row[]) {
    const k: Known = { online: r.online === 1, firstSeen: r.first_seen, lastSeen: r.last_seen, changedAt: r.changed_at }
    if (r.instance !== null) k.instance = r.instance
    if (r.runtime !== null) k.runtime = r.runtime
    known.set(r.device, k)
    if (k.online) onlineCount++
    else offline.add(r.device)
  }

  const upsert: Statement = db.prepare(`
    INSERT INTO registry (device, online, instance, runtime, first_seen, last_seen, changed_at, services)
    VALUES (@device, @online, @instance, @runtime, @firstSeen, @lastSeen, @changedAt, @services)
    ON CONFLICT (device) DO UPDATE SET online = excluded.online, instance = excluded.instance, runtime = excluded.runtime,
      first_seen = excluded.first_seen, last_seen = excluded.last_seen, changed_at = excluded.changed_at, services = excluded.services`)
  const update: Statement = db.prepare(`
    UPDATE registry SET online = @online, instance = @instance, runtime = @runtime, first_seen = @firstSeen, last_seen = @lastSeen, changed_at = @changedAt
    WHERE device = @device`)
  const remove: Statement = db.prepare('DELETE FROM registry WHERE device = ?')
  const servicesOfOne: Statement = db.prepare('SELECT services FROM registry WHERE device = ?')
  const servicesOfAll: Statement = db.prepare('SELECT device, services FROM registry')

  const ignore = (reason: string, topic: string): void => {
    stats.ignored[reason] = (stats.ignored[reason] ?? 0) + 1
    limiter?.warn(`presence ${reason}`, { reason, topic: topic.slice(0, 200) }, 'status frame not recorded in the registry')
  }

  const flush = (): void => {
    if (timer !== undefined) clearTimeout(timer)
    timer = undefined
    if (pending.size === 0 && deleted.size === 0) return
    try {
      database.transaction(() => {
        for (const device of deleted) remove.run(device)
        for (const [device, p] of pending) {
          const k = known.get(device)
          if (k === undefined) continue
          const row = { device, online: k.online ? 1 : 0, instance: k.instance ?? null, runtime: k.runtime ?? null, firstSeen: k.firstSeen, lastSeen: k.lastSeen, changedAt: k.changedAt }
          if (p.services !== undefined) upsert.run({ ...row, services: p.services })
          else update.run(row)
        }
      })
      deleted.clear()
      pending.clear()
    } catch (err) {
      // Kept for the next try (a full disk may make room); the entries in memory stay right.
      limiter?.error('write', { err: errorMessage(err) }, 'registry not written to the gateway database; trying again')
      if (!closed) schedule()
    }
  }
  const schedule = (): void => {
    if (timer === undefined) timer = setTimeout(flush, flushMs).unref()
  }
  const changed = (device: string, services?: ServiceEntry[]): void => {
    const p = pending.get(device) ?? {}
    if (services !== undefined) {
      p.services = JSON.stringify(services)
      index(device, services)
    }
    pending.set(device, p)
    schedule()
  }
  const setOnline = (device: string, k: Known, online: boolean, at: number): void => {
    if (k.online !== online) {
      k.changedAt = at
      onlineCount += online ? 1 : -1
    }
    k.online = online
    offline.delete(device)
    if (!online) offline.add(device)
  }
  /** Makes room for one more device: false when every device known is online. */
  const room = (): boolean => {
    if (known.size < maxDevices) return true
    const oldest = offline.values().next()
    if (oldest.done === true) return false
    offline.delete(oldest.value)
    known.delete(oldest.value)
    pending.delete(oldest.value)
    deleted.add(oldest.value)
    unindex(oldest.value)
    contracts.forget(oldest.value)
    return true
  }

  /** The device a topic `<prefix>/<device>/<last>` names, or undefined when the topic is not that. */
  const deviceOf = (topic: string, last: string): string | undefined => {
    if (!topic.startsWith(`${prefix}/`) || !topic.endsWith(last)) return undefined
    const device = topic.slice(prefix.length + 1, topic.length - last.length)
    return isTopicSegment(device) ? device : undefined
  }

  const record = (topic: string, device: string, payload: Uint8Array, at: number): void => {
    const k = known.get(device)
    if (payload.length === 0) {
      // The retained presence was cleared: the device is gone (its row stays).
      if (k === undefined) return
      k.lastSeen = at
      setOnline(device, k, false, at)
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
      known.set(device, entry)
      deleted.delete(device)
      if (p.online) onlineCount++
      else offline.add(device)
    }
    entry.lastSeen = at
    setOnline(device, entry, p.online, at)
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
  const parse = (json: string | undefined): ServiceEntry[] => {
    try {
      return json === undefined ? [] : servicesOf(JSON.parse(json))
    } catch {
      return []
    }
  }
  // The index of what the devices loaded above announce: their services are read this once.
  for (const r of servicesOfAll.all() as { device: string; services: string }[]) if (known.has(r.device)) index(r.device, parse(r.services))

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
      for (const [device, k] of known) {
        if (!k.online) continue
        setOnline(device, k, false, at)
        changed(device)
      }
    },
    list() {
      const stored = new Map<string, string>()
      for (const r of servicesOfAll.all() as { device: string; services: string }[]) stored.set(r.device, r.services)
      const out: DeviceEntry[] = []
      for (const [device, k] of known) out.push(entryOf(device, k, parse(pending.get(device)?.services ?? stored.get(device))))
      return out.sort((a, b) => (a.device < b.device ? -1 : a.device > b.device ? 1 : 0))
    },
    get(device) {
      const k = known.get(device)
      if (k === undefined) return undefined
      const json = pending.get(device)?.services ?? (servicesOfOne.get(device) as { services: string } | undefined)?.services
      return entryOf(device, k, parse(json))
    },
    contract: (device) => contracts.get(device),
    offering(service, version, command) {
      const online: string[] = []
      let anyOffline = false
      for (const device of byCommand.get(commandKey(service, version, command)) ?? []) {
        if (known.get(device)?.online === true) online.push(device)
        else anyOffline = true
      }
      return { online, offline: anyOffline, service: byService.has(serviceKey(service, version)) }
    },
    online: () => onlineCount,
    size: () => known.size,
    stats: () => ({ recorded: stats.recorded, ignored: { ...stats.ignored }, contracts: contracts.stats() }),
    close() {
      if (closed) return
      closed = true
      flush()
      contracts.close()
    },
  }
}
