import type { Logger } from 'pino'

/** Default most messages queued for one client. */
export const DEFAULT_MAX_QUEUED_MESSAGES = 10_000
/** Default most bytes queued for one client: 64 MiB. */
export const DEFAULT_MAX_SESSION_BYTES = 64 * 1024 * 1024
/** Default most bytes queued over all clients: 512 MiB. */
export const DEFAULT_MAX_SESSIONS_BYTES = 512 * 1024 * 1024

export interface SqlitePersistenceOptions {
  /** The broker database file, `<dataDir>/broker.db`. */
  path: string
  log?: Logger
  /**
   * Most QoS 2 messages one client may have waiting for their PUBREL (default 64); one more is
   * refused and aedes closes the connection. Each is held in memory and in the file until then.
   */
  maxIncomingPerClient?: number
  /**
   * Most QoS 1 and 2 messages queued for one client (in flight to it, or waiting for its
   * persistent session to come back), default 10 000; 0: no limit. A message for a client whose
   * queue is full is not queued for it (counted in `stats().dropped`; the client's later messages
   * still are once its queue shrinks), as Mosquitto's `max_queued_messages` does. A connected
   * client whose queue is full is disconnected: it gets what is queued when it returns.
   */
  maxQueuedMessages?: number
  /** Most payload and topic bytes queued for one client, default 64 MiB; 0: no limit. As `maxQueuedMessages`. */
  maxQueuedBytes?: number
  /** Most payload and topic bytes queued over all clients together, default 512 MiB; 0: no limit. As `maxQueuedMessages`. */
  maxTotalQueuedBytes?: number
  /** Shortest time between two log lines about one client's full queue, ms (default 60 000). */
  logIntervalMs?: number
}
