import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { AedesOptions, AedesPublishPacket, Client } from 'aedes'
import type { MqttBrokerOptions } from './broker-options.js'
import type { BrokerCounters } from './broker-stats.js'

/** Fixed header, topic length, packet id and some room for MQTT 5 properties, beyond topic and payload. */
export const PACKET_OVERHEAD = 16
const propertiesBytes = (p: AedesPublishPacket): number => (p.properties === undefined ? 0 : 64)
/** About how many bytes a PUBLISH of `p` takes on the wire; enough to tell whether it fits in a socket. */
function publishBytes(p: AedesPublishPacket): number {
  const payload = typeof p.payload === 'string' ? Buffer.byteLength(p.payload) : (p.payload?.length ?? 0)
  return Buffer.byteLength(p.topic) + payload + PACKET_OVERHEAD + propertiesBytes(p)
}

/**
 * aedes' `authorizeForward`, called for every delivery before aedes writes it: where a client
 * that does not read is held to its limit (`maxQueuedBytes`), after the configured one (if any)
 * let the delivery through. A QoS 0 message that does not fit behind what waits in the client's
 * socket is not sent; a QoS 1 message past the limit cuts the client off, and so does a socket
 * that takes no bytes for `stallMs` while a delivery waits for it.
 */
export function forwardToReaders(opts: MqttBrokerOptions, limits: { maxQueuedBytes: number; stallMs: number }, counters: BrokerCounters): SlowClients {
  const forward = opts.aedes?.authorizeForward
  const { maxQueuedBytes } = limits
  const cut = new WeakSet<object>()
  const cutOff = (client: Client, conn: Duplex): void => {
    if (cut.has(client)) return
    cut.add(client)
    counters.slowClientsCut++
    opts.onSlowClient?.({ clientId: client.id ?? undefined, queuedBytes: conn.writableLength })
    // After aedes has stored this delivery for a persistent session: it is sent on the client's return.
    setImmediate(() => conn.destroy())
  }
  const stalls = watchStalls(limits.stallMs, cutOff)
  // aedes writes a delivery a turn after letting it through (a setImmediate): deliveries let
  // through together all saw the same bytes waiting, and a burst of them took the socket past
  // its high-water mark unseen, where aedes waits for it to drain and holds the publisher. What is
  // let through and not written yet is counted here until the turn that writes it (an immediate
  // queued before aedes' own ones, so it runs first and the writes follow in the same turn).
  const promised = new Map<Duplex, number>()
  let forgetting = false
  const forget = (): void => {
    forgetting = false
    promised.clear()
  }
  const authorizeForward: NonNullable<AedesOptions['authorizeForward']> = (client, packet) => {
    const allowed = forward === undefined ? packet : forward(client, packet)
    if (allowed == null) return allowed
    const conn = client.conn as Duplex
    const ahead = promised.get(conn) ?? 0
    const backlog = conn.writableLength
    const bytes = publishBytes(allowed)
    const queued = backlog + ahead + bytes
    // A write past the high-water mark makes aedes wait for 'drain' (up to its drainTimeout,
    // 60 s), and with it the publisher's next packets. A client that has taken everything sent
    // so far (nothing waits in its socket) gets a message of any size: one larger than the
    // high-water mark (16 KiB), a command result of 100 kB, say, was dropped on its own size,
    // however fast the client read, and every such call ran to its TIMEOUT.
    // Only a socket with bytes waiting (the system takes no more just now) is held to the mark: a
    // burst to a client that reads (500 calls at once) goes out whole, as the system takes it.
    if (queued > conn.writableHighWaterMark && backlog > 0) {
      if (allowed.qos === 0) {
        counters.droppedQos0++
        return null
      }
      if (queued > maxQueuedBytes) cutOff(client, conn)
    }
    // Watched once bytes wait (the system takes no more just now), not only past the mark: what a
    // persistent session's delivery writes after its store's update may come later than counted.
    if (backlog > 0 || queued > conn.writableHighWaterMark) stalls.watch(client, conn)
    promised.set(conn, ahead + bytes)
    if (!forgetting) {
      forgetting = true
      setImmediate(forget)
    }
    return allowed
  }
  return { authorizeForward, acked: stalls.acked, close: stalls.close }
}

/** The broker's handling of clients that do not read: aedes' `authorizeForward`, `acked` for its PUBACKs, and `close` for its timer. */
export interface SlowClients {
  authorizeForward: NonNullable<AedesOptions['authorizeForward']>
  /** A client acknowledged a message (aedes' 'ack' event): it reads. */
  acked(client: Client): void
  close(): void
}

/** Bytes a socket has handed to the system so far (net and TLS sockets); undefined for other streams. */
function flushedOf(conn: Duplex): number | undefined {
  const written = (conn as Partial<Socket>).bytesWritten
  return typeof written === 'number' ? written - conn.writableLength : undefined
}

/**
 * Clients whose socket takes no bytes for `stallMs` while a delivery waits for it to drain are
 * cut off. aedes finishes a delivery to a full socket only at its 'drain', and reads a publisher's
 * next packets only once the packets it holds are delivered: with a few QoS 1 publishes in flight
 * the publisher stood still behind one subscriber that stopped reading, nothing more was queued
 * for that subscriber (so `maxQueuedBytes` was never reached), and the publisher and its other
 * subscribers waited for aedes' drainTimeout (60 s). A client that reads, however slowly, makes
 * progress and stays (see `acked`). Streams that do not count bytes written (WebSocket) keep
 * aedes' drainTimeout.
 */
function watchStalls(stallMs: number, stalled: (client: Client, conn: Duplex) => void): { watch(client: Client, conn: Duplex): void; acked(client: Client): void; close(): void } {
  const watched = new Map<Duplex, { client: Client; flushed: number; since: number }>()
  let timer: NodeJS.Timeout | undefined
  const check = (): void => {
    const now = Date.now()
    for (const [conn, w] of watched) {
      if (conn.destroyed || conn.writableLength === 0) {
        watched.delete(conn)
        continue
      }
      const flushed = flushedOf(conn)!
      if (flushed > w.flushed) {
        w.flushed = flushed
        w.since = now
      } else if (now - w.since >= stallMs && conn.writableNeedDrain) {
        // Only a socket aedes waits for holds anyone back: one that is merely behind (QoS 0
        // messages are not sent to it meanwhile) loses its own messages and stays.
        watched.delete(conn)
        stalled(w.client, conn)
      }
    }
    if (watched.size === 0) {
      clearInterval(timer)
      timer = undefined
    }
  }
  return {
    watch(client, conn) {
      if (stallMs <= 0 || watched.has(conn)) return
      const flushed = flushedOf(conn)
      if (flushed === undefined) return
      watched.set(conn, { client, flushed, since: Date.now() })
      timer ??= setInterval(check, Math.max(50, Math.min(1_000, stallMs >> 2))).unref()
    },
    // Bytes handed to the system alone missed slow readers: once a send buffer is full, Linux
    // reports room again only when about half of it is free, and on loopback, with buffers of
    // megabytes, a client reading 30-50 KB/s showed none for 10 s and was cut. Its PUBACKs show
    // that it reads; other packets do not (a client that never reads may still send PINGREQs).
    acked(client) {
      const w = watched.get(client.conn as Duplex)
      if (w !== undefined) w.since = Date.now()
    },
    close() {
      clearInterval(timer)
      timer = undefined
      watched.clear()
    },
  }
}
