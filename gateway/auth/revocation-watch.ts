import type { Aedes, Client } from 'aedes'
import { errorMessage } from '../../runtime/errors.js'
import type { LogLimiter } from '../../runtime/log-limiter.js'
import type { DeviceTable } from '../devices/device-table.js'

/** What the watch needs to know of a connected client. */
export interface WatchedIdentity {
  id: string
  internal: boolean
  /** When its credentials were checked (a secret rotated after that no longer holds). */
  authAt: number
}

/** Closes the connections of devices removed, revoked, or given a new secret since they logged in. */
export interface RevocationWatch {
  /** Checks a client as it registers with the broker (a revocation between its login and now is seen here). */
  registered(client: Client): void
  /** Starts looking at the device table every `everyMs` (the first look sets where "since" starts). */
  start(broker: Aedes, everyMs: number): void
  stop(): void
}

export function createRevocationWatch(deps: {
  devices: DeviceTable
  identityOf: (client: Client) => WatchedIdentity | undefined
  logins: LogLimiter
  /** Called for each connection closed, with why. */
  kicked: (id: string, why: string) => void
  /** Called with the devices revoked, rotated or removed since the last look, connected or not. */
  changed?: (ids: string[]) => void
}): RevocationWatch {
  const { devices, logins } = deps
  let broker: Aedes | undefined
  let timer: NodeJS.Timeout | undefined
  let stopped = false

  /** Closes `client` when its device is gone, revoked, or got a new secret after it logged in. */
  const recheck = (client: Client): void => {
    const who = deps.identityOf(client)
    if (who === undefined || who.internal || client.closed) return
    let why: string | undefined
    try {
      const device = devices.get(who.id)
      why = device === undefined ? 'removed' : device.revokedAt !== undefined ? 'revoked' : (device.rotatedAt ?? -Infinity) >= who.authAt ? 'rotated' : undefined
    } catch (err) {
      logins.error('device table', { err: errorMessage(err) }, 'device table unreadable; revocations not checked')
    }
    if (why === undefined) return
    deps.kicked(who.id, why)
    client.close()
  }

  // Clients registered since the last sweep began. A device added after that sweep's look at the
  // table may be unknown to the table's notion of "since the last call", so a revocation of it
  // before the next look would not be reported: these clients are checked directly instead.
  let fresh = new Set<Client>()

  const sweep = (): void => {
    if (broker === undefined || broker.closed) return
    const recent = fresh
    fresh = new Set()
    let changed: string[]
    try {
      changed = devices.changedSince()
    } catch (err) {
      for (const client of recent) fresh.add(client)
      return logins.error('device table', { err: errorMessage(err) }, 'device table unreadable; revocations not checked')
    }
    if (changed.length > 0) deps.changed?.(changed)
    for (const id of changed) {
      const client = (broker as unknown as { clients: Record<string, Client | undefined> }).clients[id]
      if (client !== undefined) recheck(client)
    }
    for (const client of recent) recheck(client)
  }

  return {
    registered(client) {
      recheck(client)
      if (!client.closed) fresh.add(client)
    },
    start(aedes, everyMs) {
      broker = aedes
      if (timer !== undefined || stopped) return
      sweep()
      timer = setInterval(sweep, everyMs)
      timer.unref()
    },
    stop() {
      stopped = true
      clearInterval(timer)
      fresh.clear()
    },
  }
}
