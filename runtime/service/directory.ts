import { systemClock, type Clock } from '../ports/clock.js'
import type { PresencePayload } from '../wire/envelope.js'

/** A device that runs a service, as its presence announced. */
export interface ServiceInstance {
  device: string
  instance: string
  commands: ReadonlySet<string>
}

/**
 * What the directory knows of a device: `live` (its presence says online), `gone` (seen, and
 * since announced offline or not announced again after a reconnect), or `unknown`.
 */
export type DeviceState = 'live' | 'gone' | 'unknown'

/**
 * Which devices run which services; fed by presence messages. Besides the live devices it
 * remembers the services of devices that went away (the most recent `maxGone`), so a caller can
 * tell "known but unreachable just now" from "nobody declares this service".
 */
export interface Directory {
  /**
   * Records a device's presence: online with its services, or gone (an offline presence names
   * the services the device declares, so they stay known; within the same bounds as online).
   * An offline presence of another process than the live one (the late last will of a process
   * the device replaced) changes nothing.
   */
  update(device: string, instance: string, presence: PresencePayload): void
  /** Records that a device's presence was cleared (an empty retained message): a live device is gone, whichever process announced it. */
  clear(device: string): void
  /** Live instances of a service version. */
  instances(service: string, version: string): ServiceInstance[]
  /** Picks one live instance, round robin; `undefined` when none. */
  pick(service: string, version: string): ServiceInstance | undefined
  /** Resolves when an instance appears or after `ms`. */
  waitFor(service: string, version: string, ms: number): Promise<ServiceInstance | undefined>
  /** Resolves true once `device` is live, false after `ms`. */
  waitForDevice(device: string, ms: number): Promise<boolean>
  /** True when a device that declared this service version is live or was seen before. */
  knows(service: string, version: string): boolean
  /** Whether a device is live, gone, or was never seen. */
  deviceState(device: string): DeviceState
  /** Starts a new generation: live entries not announced again before `pruneStale` are dropped. */
  markStale(): void
  /** Moves live entries not announced since the last `markStale` to the gone ones (after a reconnect). */
  pruneStale(): void
  /** Every live device with its services. */
  snapshot(): { device: string; instance: string; services: string[] }[]
}

interface LiveDevice {
  instance: string
  keys: string[]
  gen: number
  /** Names it holds against `maxNames`: its services and their commands. */
  names: number
}

/** Bounds on what presence (untrusted input) can make a directory hold. */
export interface DirectoryLimits {
  /** Devices seen and gone whose services are remembered (default 1,024; the oldest is forgotten). */
  maxGone?: number
  /** Live devices (default 4,096): presence of a further device is ignored and counted, the ones known keep working. */
  maxLive?: number
  /** Services one device may declare (default 64; the rest of its list is ignored). */
  maxServicesPerDevice?: number
  /** Commands one service may list (default 256). */
  maxCommandsPerService?: number
  /**
   * Names the directory holds in all (default 65,536): each service a live device declares, each
   * command it lists, each service remembered of a device gone. The per-device bounds alone let
   * a flood of presence for made-up devices (4,096 × 64 × 256 names of 128 characters) take a
   * device to 3 GB. Past it, the oldest gone devices are forgotten first; then the presence of a
   * further device (or a larger one of a known device) is ignored and counted, as past `maxLive`.
   */
  maxNames?: number
  /** Told of each device, service or command that presence asked for beyond these bounds (not kept). */
  onRefused?: (what: 'device' | 'service' | 'command', device: string) => void
}

/** Longest service, version or command name taken from presence (a topic level's bound). */
const MAX_NAME_LENGTH = 128

const isName = (s: unknown): s is string => typeof s === 'string' && s.length > 0 && s.length <= MAX_NAME_LENGTH

/** Options of a directory: its bounds, and the clock its waits run on. */
export interface DirectoryOptions extends DirectoryLimits {
  /** Time of `waitFor…` waits (default: the system clock); the runtime passes its own. */
  clock?: Clock
}

/** Creates an empty directory. */
export function createDirectory(opts: DirectoryOptions = {}): Directory {
  const clock = opts.clock ?? systemClock
  const maxGone = opts.maxGone ?? 1_024
  const maxLive = opts.maxLive ?? 4_096
  const maxServices = opts.maxServicesPerDevice ?? 64
  const maxCommands = opts.maxCommandsPerService ?? 256
  const maxNames = opts.maxNames ?? 65_536
  const refuse = opts.onRefused ?? ((): void => {})
  const byService = new Map<string, Map<string, ServiceInstance>>()
  const byDevice = new Map<string, LiveDevice>()
  // Devices seen and gone, with the service keys they last declared (oldest first, bounded).
  const gone = new Map<string, string[]>()
  // Service key → how many live or gone devices declared it.
  const declaredBy = new Map<string, number>()
  let generation = 0
  const cursor = new Map<string, number>()
  // Instances per service as an array, rebuilt only when presence changes.
  const lists = new Map<string, ServiceInstance[]>()
  // Callers waiting for a change: each checks its own condition.
  const waiters = new Set<() => void>()
  const key = (s: string, ver: string): string => `${s}@${ver}`
  // Names held against maxNames, live and gone.
  let held = 0

  const declare = (keys: string[], delta: number): void => {
    for (const k of keys) {
      const n = (declaredBy.get(k) ?? 0) + delta
      if (n > 0) declaredBy.set(k, n)
      else declaredBy.delete(k)
    }
  }
  const forgetGone = (device: string): void => {
    const keys = gone.get(device)
    if (keys === undefined) return
    gone.delete(device)
    held -= keys.length
    declare(keys, -1)
  }
  const markGone = (device: string, keys: string[]): void => {
    forgetGone(device)
    gone.set(device, keys)
    held += keys.length
    declare(keys, 1)
    if (gone.size > maxGone) forgetGone(gone.keys().next().value!)
    // Offline presence of made-up devices: the oldest gone ones make room (this one last). A live
    // device that goes never needs it: it keeps fewer names gone than live.
    for (const oldest of gone.keys()) {
      if (held <= maxNames) break
      forgetGone(oldest)
    }
  }
  const removeLive = (device: string): LiveDevice | undefined => {
    const before = byDevice.get(device)
    if (before === undefined) return undefined
    lists.clear()
    for (const k of before.keys) {
      const m = byService.get(k)
      if (m === undefined) continue
      m.delete(device)
      // A service nobody live runs any more leaves no entry: presence with ever new service names
      // grew a device by a gigabyte with the empty maps (and their round-robin cursors) left.
      if (m.size === 0) {
        byService.delete(k)
        cursor.delete(k)
      }
    }
    byDevice.delete(device)
    held -= before.names
    declare(before.keys, -1)
    return before
  }
  const wake = (): void => {
    for (const w of [...waiters]) w()
  }
  const waitUntil = <T>(probe: () => T | undefined, ms: number): Promise<T | undefined> => {
    const now = probe()
    if (now !== undefined || ms <= 0) return Promise.resolve(now)
    return new Promise((resolve) => {
      const settle = (value: T | undefined): void => {
        cancel()
        waiters.delete(check)
        resolve(value)
      }
      const check = (): void => {
        const v = probe()
        if (v !== undefined) settle(v)
      }
      const cancel = clock.setTimer(clock.now() + ms, () => settle(probe()))
      waiters.add(check)
    })
  }

  /** The services a presence declares, as far as the bounds allow (presence is untrusted input). */
  const declared = (device: string, services: unknown): { key: string; commands: Set<string> }[] => {
    const out: { key: string; commands: Set<string> }[] = []
    for (const s of Array.isArray(services) ? (services as PresencePayload['services']) : []) {
      // An entry that does not name a service is skipped; a device gets so many services, a
      // service so many commands.
      if (typeof s !== 'object' || s === null || !isName(s.name) || !isName(s.version)) continue
      if (out.length >= maxServices) {
        refuse('service', device)
        break
      }
      const k = key(s.name, s.version)
      if (out.some((d) => d.key === k)) continue
      const commands = new Set<string>()
      for (const c of Array.isArray(s.commands) ? s.commands : []) {
        if (!isName(c)) continue
        if (commands.size >= maxCommands) {
          refuse('command', device)
          break
        }
        commands.add(c)
      }
      out.push({ key: k, commands })
    }
    return out
  }

  const dir: Directory = {
    update(device, instance, presence) {
      if (!presence.online) {
        const live = byDevice.get(device)
        if (live !== undefined && live.instance !== instance) return
        const before = removeLive(device)
        // What it announced while live; else what its offline presence declares (a process that
        // starts while the device is away learns its services from its last will); else what
        // was known of it (an offline presence of an older runtime names none).
        const said = before === undefined ? declared(device, presence.services).map((d) => d.key) : before.keys
        markGone(device, said.length > 0 || before !== undefined ? said : (gone.get(device) ?? []))
        return
      }
      if (!byDevice.has(device) && byDevice.size >= maxLive) {
        refuse('device', device)
        return
      }
      const services = declared(device, presence.services)
      let names = 0
      for (const d of services) names += 1 + d.commands.size
      // What this device holds now is given back when it is announced again.
      const freed = (byDevice.get(device)?.names ?? 0) + (gone.get(device)?.length ?? 0)
      const over = (): boolean => held - freed + names > maxNames
      for (const oldest of gone.keys()) {
        if (!over()) break
        if (oldest !== device) forgetGone(oldest)
      }
      if (over()) {
        refuse('device', device)
        return
      }
      removeLive(device)
      forgetGone(device)
      const keys: string[] = []
      for (const { key: k, commands } of services) {
        keys.push(k)
        let m = byService.get(k)
        if (m === undefined) byService.set(k, (m = new Map()))
        m.set(device, { device, instance, commands })
      }
      declare(keys, 1)
      held += names
      byDevice.set(device, { instance, keys, gen: generation, names })
      lists.clear()
      wake()
    },
    clear(device) {
      const before = removeLive(device)
      if (before !== undefined) markGone(device, before.keys)
    },
    instances(service, version) {
      return [...(byService.get(key(service, version))?.values() ?? [])]
    },
    pick(service, version) {
      const k = key(service, version)
      const m = byService.get(k)
      if (m === undefined || m.size === 0) return undefined
      const n = (cursor.get(k) ?? 0) + 1
      cursor.set(k, n)
      let all = lists.get(k)
      if (all === undefined) lists.set(k, (all = [...m.values()]))
      return all[n % all.length]
    },
    waitFor(service, version, ms) {
      return waitUntil(() => dir.pick(service, version), ms)
    },
    waitForDevice(device, ms) {
      return waitUntil(() => (byDevice.has(device) ? true : undefined), ms).then((live) => live === true)
    },
    knows(service, version) {
      return declaredBy.has(key(service, version))
    },
    deviceState(device) {
      return byDevice.has(device) ? 'live' : gone.has(device) ? 'gone' : 'unknown'
    },
    markStale() {
      generation++
    },
    pruneStale() {
      for (const [device, d] of [...byDevice]) {
        if (d.gen < generation) dir.update(device, d.instance, { online: false, services: [] })
      }
    },
    snapshot() {
      return [...byDevice.entries()].map(([device, d]) => ({ device, instance: d.instance, services: d.keys }))
    },
  }
  return dir
}
