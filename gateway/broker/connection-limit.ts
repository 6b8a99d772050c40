import type { Duplex } from 'node:stream'
import type { Aedes } from 'aedes'
import type { ListenerKind, MqttBrokerOptions } from './broker-options.js'
import type { BrokerCounters } from './broker-stats.js'

/** Connections counted over every listener, held to `maxConnections`, with one slot on reserve. */
export interface ConnectionLimit {
  /** Counts a new connection, or closes it at once when the limit (and the reserve) is taken. */
  admit(conn: Duplex, listener: ListenerKind, remoteAddress: string | undefined): boolean
  /** Connections open now, the one on reserve included. */
  connections(): number
  /** Closes every counted connection and the one on reserve (the broker's close). */
  destroyAll(): void
}

/**
 * The connection limit, and the slot on reserve for `reservedClientId`: it takes aedes'
 * `preConnect` (the configured one runs after it) to close the connection on reserve at its
 * CONNECT unless it carries that id.
 */
export function connectionLimit(aedes: Aedes, opts: MqttBrokerOptions, maxConnections: number, counters: BrokerCounters): ConnectionLimit {
  const conns = new Set<Duplex>()
  /** The connection taken on reserve (over the limit, for `reservedClientId` only), while it is open. */
  let reserve: { conn: Duplex; listener: ListenerKind; remoteAddress: string | undefined } | undefined
  const refuse = (conn: Duplex, listener: ListenerKind, remoteAddress: string | undefined): void => {
    counters.refusedConnections++
    conn.destroy()
    opts.onRefusedConnection?.({ listener, remoteAddress })
  }
  const admit = (conn: Duplex, listener: ListenerKind, remoteAddress: string | undefined): boolean => {
    if (maxConnections > 0 && conns.size >= maxConnections) {
      // On the plain TCP listener only (where aedes is handed the socket that was admitted).
      if (opts.reservedClientId === undefined || reserve !== undefined || listener !== 'mqtt') {
        refuse(conn, listener, remoteAddress)
        return false
      }
      const held = { conn, listener, remoteAddress }
      reserve = held
      conn.once('close', () => {
        if (reserve === held) reserve = undefined
      })
      return true
    }
    conns.add(conn)
    conn.once('close', () => conns.delete(conn))
    return true
  }
  // The connection on reserve is for one client id; anyone else is refused as over the limit.
  const preConnect = opts.aedes?.preConnect
  aedes.preConnect = (client, packet, callback) => {
    if (reserve !== undefined && client.conn === reserve.conn && packet.clientId !== opts.reservedClientId) {
      const { conn, listener, remoteAddress } = reserve
      reserve = undefined
      refuse(conn, listener, remoteAddress)
      return callback(null, false)
    }
    if (preConnect === undefined) return callback(null, true)
    preConnect(client, packet, callback)
  }
  return {
    admit,
    connections: () => conns.size + (reserve === undefined ? 0 : 1),
    destroyAll() {
      for (const c of conns) c.destroy()
      reserve?.conn.destroy()
    },
  }
}
