import type tls from 'node:tls'
import type { IClientOptions, MqttClient as MqttClientType } from 'mqtt'
import type { Logger } from 'pino'
import type { BackoffOptions } from '../../backoff.js'
import { ErrorCode, OutpostError } from '../../errors.js'
import type { Clock } from '../../ports/clock.js'

/** Options of an MQTT bridge; only `url` and `deviceId` are required. */
export interface MqttBridgeOptions {
  /** Broker address: `mqtt://host:port` or `mqtts://host:port`. */
  url: string
  /** The identity it connects as (a topic level). */
  deviceId: string
  /** MQTT client id (default: the device id, so the broker keeps one session per device). */
  clientId?: string
  username?: string
  password?: string
  /** Largest inbound payload accepted, bytes (default 256 KiB); larger ones are dropped as FRAME_TOO_LARGE. */
  maxPayloadBytes?: number
  /** Most QoS 1 publishes awaiting their PUBACK at once; further publishes wait (default 256). */
  inFlightWindow?: number
  keepaliveSec?: number
  connectTimeoutMs?: number
  reconnect?: BackoffOptions
  /**
   * A connection that lasts less than this (ms, default 10 000) before the broker closes it does
   * not reset the reconnect backoff: a broker that keeps closing new connections (another client
   * took the session over with the same client id) is retried ever more slowly, not at once.
   */
  stableConnectionMs?: number
  /** Time of the reconnect backoff, of how long a connection lasted and of log rate limits (default: the system clock). */
  clock?: Clock
  /** MQTT protocol level: 4 (3.1.1, default) or 5. */
  protocolVersion?: 4 | 5
  /** Keep the broker session across reconnects and restarts (default true: QoS 1 messages wait for the device; on MQTT 5 with a Session Expiry Interval of 0xFFFFFFFF, never expiring, as a 3.1.1 session). */
  persistentSession?: boolean
  /** Extra TLS options for mqtts. */
  tls?: tls.ConnectionOptions
  logger?: Logger
}

/** The MQTT.js client type. */
export type MqttClient = MqttClientType
/** The MQTT.js client class. */
export type MqttClientClass = typeof MqttClientType

let clientClass: MqttClientClass | undefined

/** The MQTT.js client class if loadMqttClient has loaded it, else undefined. */
export const loadedMqttClient = (): MqttClientClass | undefined => clientClass

/**
 * Loads the MQTT.js client class (once per process): the class alone, since the package root
 * also loads WebSocket, SOCKS and browser support a device does not use; and at the first
 * connection, not with this module, so that MQTT.js and mqtt-packet are not evaluated before a
 * device has started serving local work.
 */
export async function loadMqttClient(): Promise<MqttClientClass> {
  if (clientClass !== undefined) return clientClass
  const clientModule: unknown = await import('mqtt/lib/client')
  // CommonJS interop differs: Node hands over module.exports as the default, esbuild the
  // module's own `default` (it honours __esModule). Accept both.
  const clientDefault = (clientModule as { default: unknown }).default
  clientClass = (typeof clientDefault === 'function' ? clientDefault : (clientDefault as { default: unknown }).default) as MqttClientClass
  return clientClass
}

/**
 * Where a broker url points: host (an IPv6 address without its brackets), port (1883, or 8883
 * for mqtts, unless given) and whether it is TLS. @throws INVALID_CONFIG for what is not a URL, or a scheme other than mqtt:// or mqtts://
 */
export function parseBrokerUrl(brokerUrl: string): { host: string; port: number; secure: boolean } {
  // Named unless it may hold a password (user:password@…).
  const named = brokerUrl.includes('@') ? 'broker url' : `broker url "${brokerUrl}"`
  if (!URL.canParse(brokerUrl)) throw new OutpostError(ErrorCode.INVALID_CONFIG, `${named} is not a URL; expected mqtt://host[:port] or mqtts://host[:port]`)
  const url = new URL(brokerUrl)
  const secure = url.protocol === 'mqtts:'
  if (url.protocol !== 'mqtt:' && !secure) {
    throw new OutpostError(ErrorCode.INVALID_CONFIG, `broker url must start with mqtt:// or mqtts:// (got ${brokerUrl})`)
  }
  // An IPv6 host keeps its brackets in a URL's hostname (`[::1]`); a socket wants the address alone.
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1'
  const port = url.port === '' ? (secure ? 8883 : 1883) : Number(url.port)
  return { host, port, secure }
}

/** What the MQTT.js options of a bridge take beside the bridge's own options. */
export interface MqttClientSetup {
  clientId: string
  /** The last will at the first CONNECT (MQTT.js reads `options.will` again at every CONNECT). */
  will: IClientOptions['will']
  /** Packet ids shared with the transport's own publishes (packet-ids.ts). */
  ids: NonNullable<IClientOptions['messageIdProvider']>
  /** Largest inbound packet read (remaining length), bytes. */
  maxPacketBytes: number
}

/** The MQTT.js client options of a bridge: its reconnects, subscriptions and packet ids are the bridge's own. */
export function mqttClientOptions(opts: MqttBridgeOptions, setup: MqttClientSetup): IClientOptions {
  const options: IClientOptions = {
    clientId: setup.clientId,
    username: opts.username,
    password: opts.password,
    protocolVersion: opts.protocolVersion ?? 4,
    clean: !(opts.persistentSession ?? true),
    keepalive: opts.keepaliveSec ?? 30,
    connectTimeout: opts.connectTimeoutMs ?? 5_000,
    reconnectPeriod: 0, // MQTT.js retries at a fixed period; the bridge backs off with jitter instead
    manualConnect: true,
    resubscribe: false, // the bridge subscribes itself on every connect
    will: setup.will,
    // MQTT.js traces every packet through `debug`; that costs a few % of CPU even when off.
    log: () => {},
    // Otherwise mqtt-packet pre-builds 65,536 two-byte Buffers for packet ids on first write:
    // ~10 MB of heap on a device, to save one small allocation per packet.
    writeCache: false,
    // MQTT.js re-arms the keepalive timer on every packet it sends or receives, ~2 µs per PUBACK
    // on a drain; without that a PINGREQ simply goes out every `keepalive` seconds, traffic or not.
    reschedulePings: false,
    messageIdProvider: setup.ids,
  }
  // MQTT 5: the broker is told the largest packet we take, and does not send a larger one
  // [MQTT-3.1.2-24]; the limit counts the whole packet (fixed header up to 5 bytes).
  // A persistent session asks to outlive the connection: without a Session Expiry Interval it
  // ends at the disconnect [MQTT-3.1.2-23], and what was sent while the device was away was lost.
  if (options.protocolVersion === 5) options.properties = { ...options.properties, maximumPacketSize: setup.maxPacketBytes + 5, ...(options.clean ? {} : { sessionExpiryInterval: 0xffffffff }) }
  return options
}
