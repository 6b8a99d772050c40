import type { PresencePayload } from '../wire/envelope.js'

/** A device that runs a service, as its presence announced. */
export interface ServiceInstance {
  device: string
  instance: string
  commands: ReadonlySet<string>
}

/** Which live devices run which services; fed by presence messages. */
export interface Directory {
  /** Records a device's presence (online with its services, or gone). */
  update(device: string, instance: string, presence: PresencePayload): void
  /** Live instances of a service version. */
  instances(service: string, version: string): ServiceInstance[]
  /** Picks one live instance, round robin; `undefined` when none. */
  pick(service: string, version: string): ServiceInstance | undefined
  /** Resolves when an instance appears or after `ms`. */
  waitFor(service: string, version: string, ms: number): Promise<ServiceInstance | undefined>
  /** Starts a new generation: entries not announced again before `pruneStale` are dropped. */
  markStale(): void
  /** Drops entries not announced since the last `markStale` (after a reconnect without session). */
  pruneStale(): void
  /** Every known live device with its services. */
  snapshot(): { device: string; instance: string; services: string[] }[]
}

/** Creates an empty directory. */
export function createDirectory(): Directory {
  const byService = new Map<string, Map<string, ServiceInstance>>()
  const byDevice = new Map<string, { instance: string; keys: string[]; gen: number }>()
  let generation = 0
  const cursor = new Map<string, number>()
  // Instances per service as an array, rebuilt only when presence changes.
  const lists = new Map<string, ServiceInstance[]>()
  const waiters = new Map<string, Set<() => void>>()
  const key = (s: string, ver: string): string => `${s}@${ver}`

  const dir: Directory = {
    update(device, instance, presence) {
      lists.clear()
      const before = byDevice.get(device)
      for (const k of before?.keys ?? []) byService.get(k)?.delete(device)
      byDevice.delete(device)
      if (!presence.online) return
      const keys: string[] = []
      for (const s of presence.services) {
        const k = key(s.name, s.version)
        keys.push(k)
        let m = byService.get(k)
        if (m === undefined) byService.set(k, (m = new Map()))
        m.set(device, { device, instance, commands: new Set(s.commands) })
        for (const w of waiters.get(k) ?? []) w()
      }
      byDevice.set(device, { instance, keys, gen: generation })
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
      const now = dir.pick(service, version)
      if (now !== undefined || ms <= 0) return Promise.resolve(now)
      const k = key(service, version)
      return new Promise((resolve) => {
        let set = waiters.get(k)
        if (set === undefined) waiters.set(k, (set = new Set()))
        const done = (): void => {
          clearTimeout(timer)
          set!.delete(done)
          resolve(dir.pick(service, version))
        }
        const timer = setTimeout(done, ms)
        set.add(done)
      })
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
