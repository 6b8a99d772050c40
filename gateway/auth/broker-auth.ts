import type { Aedes, AedesOptions } from 'aedes'
import type { Logger } from 'pino'
import type { RoleConfig } from '../config/gateway-config.js'
import type { DeviceTable } from '../devices/device-table.js'

/** Counters of the broker's gatekeeper (for /metrics). */
export interface AuthStats {
  /** Refused CONNECTs by reason (unknown, wrong-secret, revoked, client-id, anonymous). */
  refused: Record<string, number>
  /** Refused publishes by reason (namespace, layout, retain, sender, malformed). */
  deniedPublish: Record<string, number>
  /** Refused subscriptions by reason. */
  deniedSubscribe: Record<string, number>
  /** Clients disconnected because their device was revoked or its secret rotated. */
  kicked: number
}

/** The aedes hooks that authenticate devices and confine them to their namespace. */
export interface BrokerAuth {
  hooks: Pick<AedesOptions, 'authenticate' | 'authorizePublish' | 'authorizeSubscribe'>
  /** Follows a started broker: disconnects clients of revoked devices, tracks who is who. */
  attach(aedes: Aedes): void
  stats(): AuthStats
  close(): void
}

export interface BrokerAuthOptions {
  devices: DeviceTable
  roles: Record<string, RoleConfig>
  log: Logger
  /** The gateway's own clients (its monitor): client id → secret, allowed everything under `ob/`. */
  internal: ReadonlyMap<string, string>
  /** Topic prefix of the wire layout (default `ob`). */
  prefix?: string
}

/** STUB (issue 13, part C replaces it): lets everyone in. */
export function createBrokerAuth(_opts: BrokerAuthOptions): BrokerAuth {
  const stats: AuthStats = { refused: {}, deniedPublish: {}, deniedSubscribe: {}, kicked: 0 }
  return { hooks: {}, attach: () => undefined, stats: () => stats, close: () => undefined }
}
