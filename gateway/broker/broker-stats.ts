import type { BrokerEmitter } from './broker-emitter.js'

/** What the broker went through, for logs and metrics. */
export interface BrokerStats {
  /** Clients connected now, over all listeners (before or after their CONNECT). */
  connections: number
  /** Connections closed at accept because `maxConnections` were open. */
  refusedConnections: number
  /** Connections whose client had not logged in, closed at the limit to make room for a new one. */
  evictedConnections: number
  /** Connections closed because their client sent a packet larger than `maxPacketBytes`. */
  oversizedPackets: number
  /** QoS 0 messages not sent to a client whose socket was full (it did not read fast enough). */
  droppedQos0: number
  /** Clients cut off because more than `maxQueuedBytes` waited for them with QoS 1 messages still coming. */
  slowClientsCut: number
  /** Messages being delivered right now. */
  inFlight: number
  /** Messages held back now until those published before them are delivered (see broker-emitter.ts). */
  heldForOrder: number
  /** Times a message stopped waiting for one published before it that never came (5 s). */
  orderWaitsGivenUp: number
}

/**
 * The broker's own counts, one object shared by the rooms that count (listeners, connection
 * limit, slow clients); each bumps its field in place, only on the path that refuses or drops.
 */
export interface BrokerCounters {
  refusedConnections: number
  evictedConnections: number
  oversizedPackets: number
  droppedQos0: number
  slowClientsCut: number
}

export const brokerCounters = (): BrokerCounters => ({ refusedConnections: 0, evictedConnections: 0, oversizedPackets: 0, droppedQos0: 0, slowClientsCut: 0 })

/** A snapshot of the counts, with the open connections and the emitter's state as they are now. */
export function brokerStats(counters: BrokerCounters, connections: number, emitter: BrokerEmitter): BrokerStats {
  const { refusedConnections, evictedConnections, oversizedPackets, droppedQos0, slowClientsCut } = counters
  return { connections, refusedConnections, evictedConnections, oversizedPackets, droppedQos0, slowClientsCut, inFlight: emitter.current, heldForOrder: emitter.waiting, orderWaitsGivenUp: emitter.gaveUp }
}
