import type { AedesOptions, PublishPacket } from 'aedes'

/** Default largest MQTT packet (remaining length) the broker reads from a client: 1 MiB. */
export const DEFAULT_MAX_PACKET_BYTES = 1024 * 1024
/** Default most clients connected at once, over all listeners. */
export const DEFAULT_MAX_CONNECTIONS = 10_000
/** Default most bytes waiting in the broker for one client before QoS 1 deliveries to it cut it off: 1 MiB. */
export const DEFAULT_MAX_QUEUED_BYTES = 1024 * 1024
/** How long a socket may take no bytes while a delivery waits for it (see `stallMs`). */
export const DEFAULT_STALL_MS = 10_000

export type ListenerKind = 'mqtt' | 'mqtts' | 'ws'
/** Each listener as messages name it. */
export const LISTENER_NAMES: Record<ListenerKind, string> = { mqtt: 'MQTT', mqtts: 'MQTT over TLS', ws: 'MQTT over WebSocket' }

export interface MqttBrokerOptions {
  /** TCP port (default 1883; 0 picks a free one). */
  port?: number
  /** Interface to bind, for every listener (default 127.0.0.1). */
  host?: string
  /**
   * Largest packet a client may send, bytes after the fixed header (default 1 MiB). A larger one
   * closes the client's connection as soon as its header is read, before its body is buffered
   * (aedes and mqtt-packet have no limit of their own). 0 turns the limit off.
   */
  maxPacketBytes?: number
  /** Most topic levels in a publish or subscription (default: aedes' 100, its ceiling); more closes the connection. */
  maxTopicLevels?: number
  /**
   * Most clients connected at once over all listeners (default 10 000); one more takes the place
   * of the oldest connection that has not logged in yet, or, with none, is closed at accept. 0: no limit.
   */
  maxConnections?: number
  /**
   * A client id that may connect when `maxConnections` are open (the gateway's own connection):
   * one connection more (on the TCP listener) is then taken on reserve, and closed at its CONNECT unless it carries
   * this id. Without it, a gateway restarted at its limit found every slot taken by devices that
   * reconnected faster than its own client, and never got its own connection.
   */
  reservedClientId?: string
  /**
   * Bytes that may wait in the broker for one client (default 1 MiB). QoS 0 messages are not
   * sent to a client once its socket is full, so a client that does not read only loses its own
   * QoS 0 messages; QoS 1 messages wait up to this much, then the client is cut off (a persistent
   * session keeps them for its return).
   */
  maxQueuedBytes?: number
  /**
   * How long a client's socket may take no bytes while a delivery waits for it to drain, ms
   * (default 10 000; 0: aedes' own drainTimeout, 60 s, alone). Then the client is cut off like one
   * past `maxQueuedBytes`: until it is, the publishers of what it subscribes to stand still.
   */
  stallMs?: number
  /** A second listener for MQTT over TLS: a certificate and key in PEM files; with `caFile`, clients must present a certificate it signed. */
  tls?: { port: number; certFile: string; keyFile: string; caFile?: string }
  /** A listener for MQTT over WebSocket, e.g. `{ port: 8083, path: '/mqtt' }`. */
  websocket?: { port: number; path: string }
  /** Told of each connection closed for a packet that was too large. */
  onOversizedPacket?(info: { bytes: number; type: number; remoteAddress?: string; clientId?: string }): void
  /** Told of each connection refused because `maxConnections` were open. */
  onRefusedConnection?(info: { listener: ListenerKind; remoteAddress?: string }): void
  /** Told of each connection whose client had not logged in, closed at the limit to make room (`listener` and `remoteAddress` are the newcomer's). */
  onEvictedConnection?(info: { listener: ListenerKind; remoteAddress?: string }): void
  /** Told of each client cut off for not reading what the broker had for it. */
  onSlowClient?(info: { clientId?: string; queuedBytes: number }): void
  /**
   * A client's QoS 1 PUBLISH is acknowledged (PUBACK) only once the broker has it: retained and
   * queued for every persistent session in the persistence (default true). aedes on its own sends the PUBACK first and publishes after it,
   * so a broker killed in between has acknowledged messages it never stored, which the
   * publisher (a device's outbox) has already forgotten.
   */
  acknowledgeAfterStore?: boolean
  /**
   * Called for each client PUBLISH that passed authorization, before it is published and
   * acknowledged: a promise makes both wait for it (the forward queue's commit), and its
   * rejection refuses the message (no PUBACK, the connection is closed, the client sends it
   * again). Undefined: nothing to wait for. QoS 0 messages do not wait.
   */
  beforePublish?(packet: PublishPacket): Promise<void> | undefined
  aedes?: AedesOptions
}

/** The options the broker reads as numbers, defaults filled in; every room takes its limits from here. */
export interface BrokerLimits {
  host: string
  /** The port asked for on the TCP listener (0: any free one). */
  port: number
  maxPacketBytes: number
  maxConnections: number
  maxQueuedBytes: number
  stallMs: number
}

export function brokerLimits(opts: MqttBrokerOptions): BrokerLimits {
  return {
    host: opts.host ?? '127.0.0.1',
    port: opts.port ?? 1883,
    maxPacketBytes: opts.maxPacketBytes ?? DEFAULT_MAX_PACKET_BYTES,
    maxConnections: opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS,
    maxQueuedBytes: opts.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES,
    stallMs: opts.stallMs ?? DEFAULT_STALL_MS,
  }
}
