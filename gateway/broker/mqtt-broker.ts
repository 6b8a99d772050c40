import net from 'node:net'
import { Aedes, type AedesOptions } from 'aedes'
import { BrokerEmitter } from './broker-emitter.js'
import { closeBroker } from './broker-close.js'
import { brokerLimits, type MqttBrokerOptions } from './broker-options.js'
import { brokerCounters, brokerStats, type BrokerStats } from './broker-stats.js'
import { tlsOptions } from './broker-tls.js'
import { connectionLimit } from './connection-limit.js'
import { createListeners, listenAll } from './listeners.js'
import { publishPath } from './publish-path.js'
import { forwardToReaders } from './slow-clients.js'

// The broker's rooms, each in its own file: options and defaults (broker-options.ts), TLS files
// (broker-tls.ts), counts (broker-stats.ts), the publish path (publish-path.ts), slow readers
// (slow-clients.ts), the connection limit (connection-limit.ts), listeners (listeners.ts) and
// the close (broker-close.ts). Their public names are importable from here, as before.
export { DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_PACKET_BYTES, DEFAULT_MAX_QUEUED_BYTES, type MqttBrokerOptions } from './broker-options.js'
export type { BrokerStats } from './broker-stats.js'

/** One more listener on the same broker: its port and the URL clients use. */
export interface BrokerListener {
  readonly port: number
  readonly url: string
}

/** A running local MQTT broker (aedes) and the listeners in front of it. */
export interface MqttBroker {
  readonly aedes: Aedes
  /** The port actually bound (useful with port 0). */
  readonly port: number
  readonly host: string
  /** `mqtt://host:port` for clients on this machine (an IPv6 host in brackets: `mqtt://[::1]:1883`). */
  readonly url: string
  /** MQTT over TLS (`mqtts://host:port`), when configured. */
  readonly tls: BrokerListener | undefined
  /** MQTT over WebSocket (`ws://host:port/path`), when configured. */
  readonly websocket: BrokerListener | undefined
  /** Connections closed because their client sent a packet larger than `maxPacketBytes`. */
  readonly oversizedPackets: number
  stats(): BrokerStats
  /** Stops accepting connections on every listener, drops clients and closes the broker; idempotent. */
  close(): Promise<void>
}

/** `host` as it goes in a URL: an IPv6 literal in brackets ([RFC 3986 §3.2.2]), or its colons read as the port's. */
const urlHost = (host: string): string => (net.isIPv6(host) ? `[${host}]` : host)

/**
 * Starts aedes on a TCP port with TCP_NODELAY on every accepted socket, and on a TLS and a
 * WebSocket port when asked; every listener feeds the same broker.
 *
 * The broker delivers through its own emitter (broker-emitter.ts) and never waits for a client
 * that does not read: it would hold back the publisher and, through it, every other subscriber.
 * @throws PORT_IN_USE when a port is taken (e.g. by Mosquitto on 1883), INVALID_CONFIG for unreadable or invalid TLS files.
 */
export async function startMqttBroker(opts: MqttBrokerOptions = {}): Promise<MqttBroker> {
  const limits = brokerLimits(opts)
  const { host } = limits
  // TLS material first: a bad file is a configuration error before anything listens.
  const tlsContext = opts.tls === undefined ? undefined : tlsOptions(opts.tls)

  const counters = brokerCounters()
  const emitter = new BrokerEmitter()
  const path = publishPath(opts, emitter)
  const slow = forwardToReaders(opts, limits, counters)
  const aedesOptions: AedesOptions = {
    ...opts.aedes,
    mq: emitter,
    ...(path.authorizePublish === undefined ? {} : { authorizePublish: path.authorizePublish }),
    ...(opts.maxTopicLevels === undefined ? {} : { maxTopicLevels: opts.maxTopicLevels }),
    authorizeForward: slow.authorizeForward,
  }
  const aedes = await Aedes.createBroker(aedesOptions)
  path.install(aedes)
  // A PUBACK from a client shows that it reads: the stall watch takes it as progress.
  aedes.on('ack', (_packet, client) => slow.acked(client))

  const limit = connectionLimit(aedes, opts, limits.maxConnections, counters)
  const listeners = createListeners(aedes, opts, limits, tlsContext, limit, counters)
  let ports: Awaited<ReturnType<typeof listenAll>>
  try {
    ports = await listenAll(listeners, opts, limits)
  } catch (err) {
    slow.close()
    await closeBroker(aedes, listeners, limit)
    throw err
  }
  const port = ports.mqtt!
  let closed: Promise<void> | undefined
  return {
    aedes,
    port,
    host,
    url: `mqtt://${urlHost(host)}:${port}`,
    tls: ports.mqtts === undefined ? undefined : { port: ports.mqtts, url: `mqtts://${urlHost(host)}:${ports.mqtts}` },
    websocket: ports.ws === undefined ? undefined : { port: ports.ws, url: `ws://${urlHost(host)}:${ports.ws}${opts.websocket!.path}` },
    get oversizedPackets() {
      return counters.oversizedPackets
    },
    stats: () => brokerStats(counters, limit.connections(), emitter),
    close() {
      slow.close()
      closed ??= closeBroker(aedes, listeners, limit)
      return closed
    },
  }
}
