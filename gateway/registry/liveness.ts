// Which devices the registry knows, which of them are online, and which offline one a new device
// may replace: kept in memory (the registry's rows hold the same, written behind it), so that
// counting the fleet or routing a command reads nothing from the database.

/** What is kept in memory of each device: all but its services. */
export interface Known {
  online: boolean
  instance?: string
  /** Runtime version the device announced. */
  runtime?: string
  firstSeen: number
  lastSeen: number
  /** When `online` last changed. */
  changedAt: number
}

export interface Liveness {
  get(device: string): Known | undefined
  has(device: string): boolean
  entries(): IterableIterator<[string, Known]>
  /** Devices known. */
  size(): number
  /** Devices online now. */
  online(): number
  /** Takes a device not known yet (seen for the first time, or loaded), online or offline as `k` says. */
  add(device: string, k: Known): void
  /** Sets a device online or offline; `changedAt` moves only when that changes. */
  setOnline(device: string, k: Known, online: boolean, at: number): void
  /** Forgets the device offline the longest and names it; undefined when every device known is online. */
  evictOldestOffline(): string | undefined
}

export function createLiveness(): Liveness {
  const known = new Map<string, Known>()
  // Devices offline, the one offline the longest first: the ones a new device may replace.
  const offline = new Set<string>()
  let onlineCount = 0
  return {
    get: (device) => known.get(device),
    has: (device) => known.has(device),
    entries: () => known.entries(),
    size: () => known.size,
    online: () => onlineCount,
    add(device, k) {
      known.set(device, k)
      if (k.online) onlineCount++
      else offline.add(device)
    },
    setOnline(device, k, online, at) {
      if (k.online !== online) {
        k.changedAt = at
        onlineCount += online ? 1 : -1
      }
      k.online = online
      offline.delete(device)
      if (!online) offline.add(device)
    },
    evictOldestOffline() {
      const oldest = offline.values().next()
      if (oldest.done === true) return undefined
      offline.delete(oldest.value)
      known.delete(oldest.value)
      return oldest.value
    },
  }
}
