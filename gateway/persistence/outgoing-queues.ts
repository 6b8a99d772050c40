import type { Logger } from 'pino'
import { packetBytes, type StoredPacket } from './stored-packet.js'

/** One packet of a client's outgoing queue and its row in broker.db. */
export interface Queued {
  seq: number
  packet: StoredPacket
  /** What it counts for in its client's byte budget (kept: a PUBREL takes the place of its PUBLISH). */
  bytes: number
}

/** How the queues of persistent sessions stand, for metrics. */
export interface SessionQueueStats {
  /** Messages queued over all clients now. */
  queued: number
  /** Their payload and topic bytes. */
  queuedBytes: number
  /** Messages not queued for a client since start, its queue being full. */
  dropped: number
}

/** The QoS 1 and 2 packets queued for each client and in flight to it, within each client's budget (in memory; the persistence writes the rows). */
export interface OutgoingQueues {
  /** A client's queue, oldest first (undefined when empty). */
  of(clientId: string): Queued[] | undefined
  /** Appends a packet read back from the file. */
  restore(clientId: string, seq: number, packet: StoredPacket): void
  /** Appends a copy of `packet` when the client's queue has room (counted and logged when not). */
  add(clientId: string, packet: StoredPacket, copy: (p: StoredPacket) => StoredPacket): Queued | undefined
  /** Takes the entry at `index` out of a client's queue. */
  take(clientId: string, index: number): Queued
  stats(): SessionQueueStats
}

export function createOutgoingQueues(opts: { maxQueued: number; maxQueuedBytes: number; maxTotalBytes?: number; logIntervalMs: number; log?: Logger }): OutgoingQueues {
  const { maxQueued, maxQueuedBytes, logIntervalMs, log } = opts
  const maxTotalBytes = opts.maxTotalBytes ?? 0
  const queues = new Map<string, Queued[]>()
  /** Bytes queued per client (payload and topic), beside `queues`. */
  const bytesOf = new Map<string, number>()
  /** When a client's full queue was last logged. */
  const fullLogged = new Map<string, number>()
  let queued = 0
  let queuedBytes = 0
  let dropped = 0
  let nextSeq = 1

  /** Adds a message of `bytes` to a client's queue counts (`sign` 1), or takes one away (-1). */
  const count = (clientId: string, bytes: number, sign: 1 | -1): void => {
    queued += sign
    queuedBytes += sign * bytes
    const left = (bytesOf.get(clientId) ?? 0) + sign * bytes
    if (left > 0) bytesOf.set(clientId, left)
    else bytesOf.delete(clientId)
  }

  const append = (clientId: string, entry: Queued): void => {
    let queue = queues.get(clientId)
    if (queue === undefined) queues.set(clientId, (queue = []))
    queue.push(entry)
    count(clientId, entry.bytes, 1)
  }

  /** Whether a client's queue has room for a message of `bytes`; counts and logs (once a while) when not. */
  const hasRoom = (clientId: string, bytes: number): boolean => {
    const n = queues.get(clientId)?.length ?? 0
    const held = bytesOf.get(clientId) ?? 0
    // Over all clients too: each queue keeps a copy of its own in broker.db (and in memory once
    // loaded at a restart): 200 sessions away made 8 MB of events take 1.8 GB and a 2.25 GB start.
    const overall = maxTotalBytes > 0 && queuedBytes + bytes > maxTotalBytes
    const full = overall || (maxQueued > 0 && n >= maxQueued) || (maxQueuedBytes > 0 && n > 0 && held + bytes > maxQueuedBytes)
    if (!full) return true
    dropped++
    const now = Date.now()
    const last = fullLogged.get(clientId)
    if (last === undefined || now - last >= logIntervalMs) {
      fullLogged.set(clientId, now)
      if (fullLogged.size > 10_000) fullLogged.clear()
      log?.warn(
        { clientId, queued: n, queuedBytes: held, maxQueuedMessages: maxQueued, maxQueuedBytes, ...(overall ? { allQueuedBytes: queuedBytes, maxTotalBytes } : {}), droppedSinceStart: dropped },
        overall ? 'the queues of all clients together are full: new QoS 1/2 messages for this client are not kept until some are taken' : 'queue of a client is full: new QoS 1/2 messages for it are not kept until it takes some',
      )
    }
    return false
  }

  return {
    of: (clientId) => queues.get(clientId),
    restore(clientId, seq, packet) {
      append(clientId, { seq, packet, bytes: packetBytes(packet) })
      nextSeq = seq + 1
    },
    add(clientId, packet, copy) {
      const bytes = packetBytes(packet)
      if (!hasRoom(clientId, bytes)) return undefined
      const entry = { seq: nextSeq++, packet: copy(packet), bytes }
      append(clientId, entry)
      return entry
    },
    take(clientId, index) {
      const queue = queues.get(clientId)!
      const [entry] = queue.splice(index, 1)
      if (queue.length === 0) queues.delete(clientId)
      count(clientId, entry!.bytes, -1)
      return entry!
    },
    stats: () => ({ queued, queuedBytes, dropped }),
  }
}
