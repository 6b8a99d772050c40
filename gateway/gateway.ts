import { randomBytes } from 'node:crypto'
import path from 'node:path'
import type { AedesOptions } from 'aedes'
import aedesPersistence from 'aedes-persistence'
import * as v from 'valibot'
import type { Logger } from 'pino'
import { backoffDelay, createPause } from '../runtime/backoff.js'
import { ErrorCode, OutpostError } from '../runtime/errors.js'
import { makeDirs } from '../runtime/make-dirs.js'
import { createMqttBridge } from '../runtime/bridges/mqtt/mqtt-bridge.js'
import { createRuntime, defineContract, defineService, type Runtime } from '../runtime/index.js'
import { createLogLimiter } from '../runtime/log-limiter.js'
import { createLogger } from '../runtime/logger.js'
import type { DeviceDatabase } from '../runtime/stores/sqlite/index.js'
import type { Bridge } from '../runtime/ports/bridge.js'
import { createBrokerAuth, ownClientIdsOnly, type BrokerAuth } from './auth/broker-auth.js'
import { startMqttBroker, type MqttBroker } from './broker/mqtt-broker.js'
import { defaultGatewayConfig, type GatewayConfig } from './config/gateway-config.js'
import { createDeviceTable, type DeviceTable } from './devices/device-table.js'
import { startHttpServer, type HttpServer } from './http/http-server.js'
import { createTraffic } from './http/traffic.js'
import { ownPayloads } from './persistence/own-payloads.js'
import { guardReplay } from './persistence/replay-guard.js'
import { limitRetained } from './persistence/retained-limit.js'
import { createSqlitePersistence } from './persistence/sqlite-persistence.js'
import { createPresenceFeed } from './registry/presence-feed.js'
import { createRegistry, type Registry } from './registry/registry.js'
import { createForwarder, type Forwarder } from './forward/forwarder.js'
import { createCommandRouter, type CommandRouter } from './commands/command-router.js'
import type { CommandFrontEnd } from './commands/command-request.js'
import { startNatsCommands } from './commands/nats-commands.js'
import { startRabbitCommands } from './commands/rabbitmq-commands.js'
import { openGatewayDatabase, setAsideGatewayDatabases } from './store/gateway-database.js'
import { createWritableCheck } from './store/writable-check.js'
import { createDeviceAdmission } from './commands/device-admission.js'

import { GATEWAY_CLIENT_ID, RESERVED_DEVICE_IDS } from './devices/reserved-ids.js'

export { RESERVED_DEVICE_IDS }

/** A running gateway: the local broker plus a monitor that follows devices and their events. */
export interface Gateway {
  /** The broker now running (a new one after `interrupt`). */
  readonly broker: MqttBroker
  readonly runtime: Runtime
  /** The configuration it runs on (defaults applied). */
  readonly config: GatewayConfig
  /** The devices allowed on the broker (the gateway database's device table). */
  readonly devices: DeviceTable
  /** The fleet: who is online, what each device offers. */
  readonly registry: Registry
  /** The HTTP face (health, readiness, metrics, devices), when enabled. */
  readonly http: HttpServer | undefined
  /** The broker's gatekeeper (its counters), when authentication is on. */
  readonly auth: BrokerAuth | undefined
  /** Store-and-forward to cloud targets, when `forward` is configured. */
  readonly forwarder: Forwarder | undefined
  /** Device commands for cloud callers (what HTTP, NATS and RabbitMQ callers go through). */
  readonly commands: CommandRouter
  /**
   * A drill: stops the broker (every device loses its connection) and starts it again on the
   * same port after `ms`, with the state it had: sessions, subscriptions and the QoS 1 messages
   * queued for devices that were away. If the port is taken by then, it says so (once a minute)
   * and tries again, backing off up to 5 s, until the port is free or the gateway is closed;
   * it never rejects.
   */
  interrupt(ms: number): Promise<void>
  /** Stops the monitor, then the broker; idempotent. */
  close(): Promise<void>
}

export interface GatewayOptions {
  /** The whole configuration (gateway/config); `port` and `host` below override its MQTT ones. */
  config?: GatewayConfig
  /** MQTT port (default 1883; 0 picks a free port). */
  port?: number
  host?: string
  /** Default: info, readable on a terminal and JSON lines otherwise (runtime/logger.ts). */
  logger?: Logger
  /**
   * Shortest time between two log lines about one client connecting, disconnecting or failing,
   * ms (default 60 000); the lines in between are counted, not written.
   */
  clientLogIntervalMs?: number
  /** Longest wait between two tries to bind the port again after a drill, ms (default 5 000). */
  rebindMaxMs?: number
}

/** Longest client id written to the log; a client chooses its id, up to 65,535 bytes. */
const MAX_LOGGED_ID = 64
const loggedId = (id: string): string => (id.length > MAX_LOGGED_ID ? `${id.slice(0, MAX_LOGGED_ID)}…` : id)
const why = (err: unknown): string => String((err as Error | undefined)?.message ?? err).slice(0, 200)

// A CommonJS package whose module.exports is the factory (its typings call it the default export).
const memoryPersistence = aedesPersistence as unknown as () => NonNullable<AedesOptions['persistence']>

const monitorContract = defineContract({ name: 'gateway', version: '1', description: 'Follows the fleet: presence and events.' })

/**
 * Starts the gateway: an embedded aedes broker and a monitor runtime that follows the devices
 * that come and go (logged at info, at most one line per client and kind a minute, with a
 * count) and the events they send (logged at debug). Auth/ACL, persistence, cloud forwarding
 * and exports come with later issues.
 * @throws PORT_IN_USE when the MQTT port is taken.
 */
export async function startGateway(opts: GatewayOptions = {}): Promise<Gateway> {
  const config: GatewayConfig = structuredClone(opts.config ?? defaultGatewayConfig())
  if (opts.port !== undefined) config.mqtt.port = opts.port
  if (opts.host !== undefined) config.mqtt.host = opts.host
  const log = opts.logger ?? createLogger({ name: 'gateway', level: config.log.level, format: config.log.format })
  // Off by the file's own word, or for want of a file: the way to turn it on differs.
  if (!config.auth.enabled) log.warn(`authentication is off: any client may connect, publish and subscribe (${config.source === undefined ? 'development defaults; start with --config to turn it on' : `auth.enabled is false in ${config.source}`})`)
  // Device logins on and the HTTP face open: whoever reaches it may list devices, call their
  // commands and flash them over the air. Said, as the open broker is.
  else if (config.http.enabled && config.http.token === undefined) {
    log.warn({ http: `${config.http.host}:${config.http.port}` }, 'the HTTP API has no token (OUTPOST_HTTP_TOKEN or http.token): anyone who reaches it may call device commands and flash devices')
  }
  if (config.dataDir !== undefined) {
    try {
      makeDirs(config.dataDir)
    } catch (err) {
      // dataDir naming a file (/dev/null, say) or a folder that cannot be made: the key, not a bare EEXIST.
      const code = (err as NodeJS.ErrnoException).code ?? 'ERROR'
      throw new OutpostError(ErrorCode.INVALID_CONFIG, `dataDir: cannot use ${config.dataDir} as the data folder (${code === 'EEXIST' || code === 'ENOTDIR' ? 'a file is in the way' : code})`, { cause: err, details: { dataDir: config.dataDir } })
    }
  }
  // The gateway database (devices, registry): in memory when nothing is kept on disk.
  const database: DeviceDatabase = openGatewayDatabase(config.dataDir === undefined ? ':memory:' : path.join(config.dataDir, 'gateway.db'))
  const devices = createDeviceTable(database)
  // Its own clients are not devices; no device is online on a broker that has just started.
  const registry = createRegistry(database, { exclude: RESERVED_DEVICE_IDS, log })
  // Presence and contract documents feed it, and a device whose client left silently goes offline.
  const presence = createPresenceFeed({ registry, log, onError: (err) => troubles.warn('registry', { err: why(err) }, 'presence not recorded in the registry') })
  // Devices online at the last gateway's end (or 5 minutes before): commands wait for them a little (command router).
  const startedAt = Date.now()
  const wereOnline = registry.list().filter((e) => e.online || startedAt - e.changedAt < 300_000).map((e) => e.device)
  registry.offlineAll(startedAt)
  // Messages through each broker, for /metrics.
  const traffic = config.http.enabled ? createTraffic() : undefined
  // The gateway's own client logs in with a secret made for this run.
  const internal = new Map([[GATEWAY_CLIENT_ID, randomBytes(24).toString('base64url')]])
  // With logins checked, commands for a device that cannot log in fail at once (not held).
  const admission = config.auth.enabled ? createDeviceAdmission(devices) : undefined
  const auth = config.auth.enabled ? createBrokerAuth({ devices, roles: config.auth.roles, log, internal, onDevicesChanged: (ids) => admission?.changed(ids) }) : undefined
  if (auth !== undefined && devices.list().length === 0) {
    // Every login is refused: say so once, and why when a damaged table was set aside before (a
    // restart after STORE_CORRUPT found a new, empty one and said nothing).
    const aside = config.dataDir === undefined ? [] : setAsideGatewayDatabases(config.dataDir)
    if (aside.length === 0) log.warn('no device is registered yet: every device login is refused (add one with outpost devices add)')
    else log.warn({ setAside: aside }, `no device is registered: every device login is refused. A damaged gateway database was set aside as ${aside.at(-1)}; the devices registered in it are not in this one (restore gateway.db from a backup, or add them again with outpost devices add)`)
  }
  // A client that connects in a loop, or a flood of clients: a line a minute per client (256
  // tracked, the rest share one line), never one per connection.
  const clients = createLogLimiter(log, { intervalMs: opts.clientLogIntervalMs, maxReasons: 256 })
  const troubles = createLogLimiter(log, { intervalMs: opts.clientLogIntervalMs })
  // Broker state: in broker.db (survives a restart), or in memory (a drill's new broker keeps it).
  const brokerDatabase = config.persistence === 'sqlite' && config.dataDir !== undefined ? createSqlitePersistence({ path: path.join(config.dataDir, 'broker.db'), log, maxQueuedMessages: config.mqtt.sessionMaxMessages, maxQueuedBytes: config.mqtt.sessionMaxBytes, maxTotalQueuedBytes: config.mqtt.sessionsMaxBytes }) : undefined
  const persistence = brokerDatabase ?? memoryPersistence()
  // Kept payloads do not hold the socket reads they came in; a returning session is not cut off.
  ownPayloads(persistence as unknown as Parameters<typeof ownPayloads>[0])
  guardReplay(persistence as unknown as Parameters<typeof guardReplay>[0])
  // Retained messages bounded in topics and bytes (any client may retain on any topic with auth off).
  const retained = await limitRetained(persistence as unknown as Parameters<typeof limitRetained>[0], { maxTopics: config.mqtt.retainedMaxTopics, maxBytes: config.mqtt.retainedMaxBytes, log })
  // Events on their way to cloud targets: forward.db beside the others (in memory without a data folder).
  let forwarder: Forwarder | undefined
  try {
    forwarder = config.forward === undefined || Object.keys(config.forward.targets).length === 0 ? undefined : createForwarder({ config: config.forward, path: config.dataDir === undefined ? ':memory:' : path.join(config.dataDir, 'forward.db'), log })
  } catch (err) {
    await persistence.destroy?.()
    auth?.close()
    presence.close()
    registry.close()
    database.close()
    throw err
  }
  // Readiness: the database files as opened, and whether they take writes.
  const databaseWritable = createWritableCheck({
    files: config.dataDir === undefined ? [] : [path.join(config.dataDir, 'gateway.db'), ...(config.persistence === 'sqlite' ? [path.join(config.dataDir, 'broker.db')] : []), ...(forwarder === undefined ? [] : [path.join(config.dataDir, 'forward.db')])],
    database,
    broker: brokerDatabase,
    gone: (files) => troubles.error('database file gone', { files }, 'database file deleted or replaced while the gateway runs: what it writes now is lost at its next start, and outpost devices no longer reaches its device table'),
  })
  /** Closes what outlives a broker: broker.db (aedes never closes its persistence), the gatekeeper, gateway.db. */
  const closeStores = async (): Promise<void> => {
    await forwarder?.close()
    await persistence.destroy?.()
    auth?.close()
    presence.close()
    registry.close()
    database.close()
  }
  // Set once close() was called (declared before the broker's handlers that read it).
  let closed: Promise<void> | undefined
  const startBroker = async (port: number): Promise<MqttBroker> => {
    const b = await startMqttBroker({
      port,
      host: config.mqtt.host,
      maxPacketBytes: config.mqtt.maxPacketBytes,
      maxTopicLevels: config.mqtt.maxTopicLevels,
      maxConnections: config.mqtt.maxConnections,
      stallMs: config.mqtt.stallMs,
      // Its own connection gets in when devices took every slot (a restart at the limit).
      reservedClientId: GATEWAY_CLIENT_ID,
      tls: config.mqtt.tls,
      websocket: config.mqtt.websocket,
      onRefusedConnection: (c) => troubles.warn('connection limit', { listener: c.listener, remoteAddress: c.remoteAddress, maxConnections: config.mqtt.maxConnections }, 'connection refused: too many clients connected'),
      onEvictedConnection: (c) => troubles.warn('connection limit, not logged in', { listener: c.listener, remoteAddress: c.remoteAddress, maxConnections: config.mqtt.maxConnections }, 'connection limit reached: a connection that had not logged in yet was closed to make room for a new one'),
      onSlowClient: (c) => troubles.warn('slow client', { client: c.clientId === undefined ? undefined : loggedId(c.clientId), queuedBytes: c.queuedBytes }, 'client cut off: it does not read what the broker has for it'),
      ...(forwarder === undefined ? {} : { beforePublish: (packet: { topic: string; payload: unknown }) => forwarder.accept(packet.topic, packet.payload as Uint8Array) }),
      aedes: { persistence, maxClientsIdLength: 128, ...(auth?.hooks ?? { authenticate: ownClientIdsOnly(internal) }), ...(traffic === undefined ? {} : { authorizeForward: traffic.forward }) },
      // A client that sends a packet over the limit is cut off; a flood of them is one line a minute.
      onOversizedPacket: (p) =>
        troubles.warn('oversized packet', { client: p.clientId === undefined ? undefined : loggedId(p.clientId), bytes: p.bytes, packetType: p.type, remoteAddress: p.remoteAddress }, 'client sent a packet over the size limit; connection closed'),
    })
    b.aedes.on('client', (c) => clients.info(`connected ${loggedId(c.id)}`, { client: loggedId(c.id) }, 'device connected'))
    b.aedes.on('clientDisconnect', (c) => clients.info(`disconnected ${loggedId(c.id)}`, { client: loggedId(c.id) }, 'device disconnected'))
    // Malformed packets, protocol violations, sockets cut mid-packet: what a hostile or broken client causes.
    b.aedes.on('clientError', (c, err) => {
      // Not the client's fault: "connection closed" is aedes writing to one that just left; the
      // gateway's own client's socket may end, as it stops, before its DISCONNECT was read.
      if (why(err) === 'connection closed' || (closed !== undefined && c.id === GATEWAY_CLIENT_ID)) return
      troubles.warn(`client error: ${why(err).slice(0, 80)}`, { client: loggedId(c.id), err: why(err) }, 'client error')
    })
    b.aedes.on('connectionError', (c, err) => troubles.warn(`connection error: ${why(err).slice(0, 80)}`, { client: loggedId(String(c.id)), err: why(err) }, 'connection refused'))
    presence.attach(b.aedes)
    auth?.attach(b.aedes)
    traffic?.attach(b.aedes)
    return b
  }
  let broker: MqttBroker
  try {
    broker = await startBroker(config.mqtt.port)
  } catch (err) {
    // A taken MQTT port: the databases close again, so another try (or another gateway) can open them.
    await closeStores()
    throw err
  }
  // Events are logged at debug only: then the monitor subscribes to every event. Otherwise it
  // takes none, so the broker does not deliver (and the gateway decode) every event twice.
  const monitor = defineService(monitorContract, {
    commands: {},
    subscriptions: (s): Record<string, ReturnType<typeof s.pattern>> =>
      log.isLevelEnabled('debug')
        ? {
            everything: s.pattern({ schema: v.unknown() }, (payload, ctx) => {
              // A device, or anyone on the broker, decides how many events there are.
              ctx.log.debug({ from: ctx.event.device, event: `${ctx.event.service}.${ctx.event.name}`, payload }, 'event')
            }),
          }
        : {},
  })
  // Its broker is in this process: a CONNACK slower than a device's 5 s is a busy start (a large
  // store after kill -9, a loaded machine), not a broker that is gone.
  const own = createMqttBridge({ url: broker.url, deviceId: GATEWAY_CLIENT_ID, username: GATEWAY_CLIENT_ID, password: internal.get(GATEWAY_CLIENT_ID), logger: log, connectTimeoutMs: 30_000 })
  const runtime = createRuntime({ bridge: own, services: [monitor], logger: log })
  // The start waits for that connection however long it takes; a first attempt that fails is
  // tried again (the bridge backs off and reconnects), not the end of the gateway: one CONNACK
  // timeout in a loaded CI run killed a gateway that was restarting after kill -9.
  await runtime.start()
  await connected(own)
  forwarder?.start()
  // Cloud callers to device commands: routed by the registry, sent through the gateway's runtime.
  const commands = createCommandRouter({ runtime, registry, defaults: config.commands, reconnecting: wereOnline, admission })
  let brokerUp = true
  // Cloud callers over NATS and RabbitMQ (started below, after the HTTP face), by front end: /metrics reads their counts.
  const cloudCommands = new Map<'nats' | 'rabbitmq', CommandFrontEnd>()
  const http = config.http.enabled
    ? await startHttpServer({
        host: config.http.host,
        port: config.http.port,
        token: config.http.token,
        log,
        traffic,
        view: {
          broker: () => (brokerUp ? broker : undefined),
          databaseWritable,
          registry,
          sessions: () => brokerDatabase?.stats(),
          retained: () => retained.stats(),
          forward: () => forwarder?.stats(),
          cloudCommands: () => [...cloudCommands].map(([frontEnd, f]) => [frontEnd, f.stats()]),
          ...(config.commands.http.enabled ? { commands: { router: commands, allow: config.commands.http.allow } } : {}),
          auth: () => auth?.stats() ?? { refused: {}, deniedPublish: {}, deniedSubscribe: {}, kicked: 0 },
        },
      }).catch(async (err: unknown) => {
        // A taken HTTP port: what has started stops again, so the ports and gateway.db are free for another try.
        await runtime.stop({ drainMs: 0 })
        await broker.close()
        await closeStores()
        throw err
      })
    : undefined
  // Cloud callers over NATS and RabbitMQ, side by side (in turn, two stalled links delayed "ready" by 20 s); unreachable, they keep trying.
  const [nats, rabbit] = await Promise.all([
    config.commands.nats === undefined ? undefined : startNatsCommands({ config: config.commands.nats, router: commands, log }),
    config.commands.rabbitmq === undefined ? undefined : startRabbitCommands({ config: config.commands.rabbitmq, router: commands, log }),
  ])
  if (nats !== undefined) cloudCommands.set('nats', nats)
  if (rabbit !== undefined) cloudCommands.set('rabbitmq', rabbit)
  log.info({ url: broker.url, http: http?.url, auth: config.auth.enabled, persistence: config.persistence, dataDir: config.dataDir }, 'gateway ready')
  // Its wait between two tries to bind again is cut short when the gateway is closed meanwhile.
  const pause = createPause()
  let restarting: Promise<void> | undefined
  /** Binds the port again until it works or the gateway is closed; each failure at most one line a minute. */
  const restart = async (port: number): Promise<void> => {
    for (let attempt = 1; closed === undefined; attempt++) {
      try {
        const b = await startBroker(port)
        if (closed !== undefined) return void (await b.close())
        broker = b
        log.info({ url: broker.url }, 'broker back')
        return
      } catch (err) {
        const code = (err as { code?: string }).code ?? 'ERROR'
        const delayMs = backoffDelay(attempt, { initialMs: 250, maxMs: opts.rebindMaxMs ?? 5_000 })
        troubles.warn(`rebind ${code}`, { code, port, err: why(err) }, 'broker cannot take its port back; trying again with backoff')
        await pause.wait(delayMs)
      }
    }
  }
  return {
    get broker() {
      return broker
    },
    runtime,
    config,
    devices,
    registry,
    http,
    auth,
    forwarder,
    commands,
    async interrupt(ms) {
      const port = broker.port
      log.warn({ forMs: ms }, 'broker stopping (drill)')
      brokerUp = false
      await broker.close()
      registry.offlineAll(Date.now())
      await pause.wait(ms)
      if (closed !== undefined) return
      restarting = restart(port)
      await restarting
      brokerUp = closed === undefined
    },
    close() {
      closed ??= (async () => {
        pause.wake()
        await restarting
        await http?.close()
        await Promise.all([...cloudCommands.values()].map((f) => f.close()))
        await runtime.stop({ drainMs: 1_000 })
        brokerUp = false
        await broker.close()
        // No broker, no device online: `outpost devices list` said online after a clean stop.
        registry.offlineAll(Date.now())
        await closeStores()
      })()
      return closed
    },
  }
}

/** Resolves once `bridge` is connected (at once when it is). */
function connected(bridge: Bridge): Promise<void> {
  return new Promise((resolve) => {
    if (bridge.status.type === 'connected') return resolve()
    const off = bridge.onStatus((s) => {
      if (s.type !== 'connected') return
      off()
      resolve()
    })
  })
}
