import type { Duplex } from 'node:stream'
import type { Aedes } from 'aedes'
import type { ListenerKind, MqttBrokerOptions } from './broker-options.js'
import type { BrokerCounters } from './broker-stats.js'

/** Connections counted over every listener, held to `maxConnections`, with one slot on reserve. */
export interface ConnectionLimit {
  /**
   * Counts a new connection. At the limit, it takes the place of the oldest connection whose
   * client has not logged in yet (closed to make room); with none, it is closed at once (or
   * taken on reserve).
   */
  admit(conn: Duplex, listener: ListenerKind, remoteAddress: string | undefined): boolean
  /** `client` (aedes') came on the counted connection `conn`: once it has logged in, it keeps its place. */
  track(client: object, conn: Duplex): void
  /** Connections open now, the one on reserve included. */
  connections(): number
  /** Closes every counted connection and the one on reserve (the broker's close). */
  destroyAll(): void
}

/**
 * The connection limit, and the slot on reserve for `reservedClientId`: it takes aedes'
 * `preConnect` (the configured one runs after it) to close the connection on reserve at its
 * CONNECT unless it carries that id.
 *
 * A connection that has not logged in (no CONNECT yet, or one still being checked) gives its
 * place to a new one at the limit, the oldest first. Before, sockets that never sent a CONNECT
 * held every place for aedes' connect timeout (30 s), and a client that opened them again as
 * they were closed kept every device off the broker for as long as it liked.
 */
export function connectionLimit(aedes: Aedes, opts: MqttBrokerOptions, maxConnections: number, counters: BrokerCounters): ConnectionLimit {
  const conns = new Set<Duplex>()
  // Counted connections whose client has not logged in, oldest first; and whose client is which.
  const pending = new Set<Duplex>()
  const countedOf = new WeakMap<object, Duplex>()
  aedes.on('client', (client) => {
    const conn = countedOf.get(client)
    if (conn !== undefined) pending.delete(conn)
  })
  /** The connection taken on reserve (over the limit, for `reservedClientId` only), while it is open. */
  let reserve: { conn: Duplex; listener: ListenerKind; remoteAddress: string | undefined } | undefined
  const refuse = (conn: Duplex, listener: ListenerKind, remoteAddress: string | undefined): void => {
    counters.refusedConnections++
    conn.destroy()
    opts.onRefusedConnection?.({ listener, remoteAddress })
  }
  const admit = (conn: Duplex, listener: ListenerKind, remoteAddress: string | undefined): boolean => {
    const waiting: Duplex | undefined = maxConnections > 0 && conns.size >= maxConnections ? pending.values().next().value : undefined
    if (waiting !== undefined) {
      pending.delete(waiting)
      conns.delete(waiting)
      counters.evictedConnections++
      waiting.destroy()
      opts.onEvictedConnection?.({ listener, remoteAddress })
    }
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
    pending.add(conn)
    conn.once('close', () => {
      conns.delete(conn)
      pending.delete(conn)
    })
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
    track: (client, conn) => countedOf.set(client, conn),
    connections: () => conns.size + (reserve === undefined ? 0 : 1),
    destroyAll() {
      for (const c of conns) c.destroy()
      reserve?.conn.destroy()
    },
  }
}
