// Which devices announce which services and commands, kept with each change of a device's
// services: the command router asks who runs a command on every call that names no device, and
// reading (and parsing) every device's services for that would cost as much as the fleet is large.
import type { ServiceEntry } from './services.js'

/** What `Registry.offering` answers. */
export interface CommandOffers {
  online: string[]
  offline: boolean
  service: boolean
}

export interface OfferIndex {
  /** Takes the services a device announces now in place of the ones it announced before. */
  index(device: string, services: readonly ServiceEntry[]): void
  /** Forgets what a device announces. */
  unindex(device: string): void
  /** Who announces `command` of `service@version` (see `Registry.offering`). */
  offering(service: string, version: string, command: string): CommandOffers
}

/** Creates an empty index; `isOnline` tells the devices online now from the others. */
export function createOfferIndex(isOnline: (device: string) => boolean): OfferIndex {
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

  return {
    index(device, services) {
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
    },
    unindex,
    offering(service, version, command) {
      const online: string[] = []
      let anyOffline = false
      for (const device of byCommand.get(commandKey(service, version, command)) ?? []) {
        if (isOnline(device)) online.push(device)
        else anyOffline = true
      }
      return { online, offline: anyOffline, service: byService.has(serviceKey(service, version)) }
    },
  }
}
