import { randomBytes } from 'node:crypto'
import net from 'node:net'
import tls from 'node:tls'
// The client class alone: the package root also loads WebSocket, SOCKS and browser support a device does not use.
import * as clientModule from 'mqtt/lib/client'
import type { IClientOptions, IPublishPacket, MqttClient as MqttClientType } from 'mqtt'
import { pino, type Logger } from 'pino'
import { ErrorCode, OutpostError } from '../../errors.js'
import type { Bridge, InboundMessage, MessageHandler, SubscribeOptions, Subscription } from '../../ports/bridge.js'
import { createEnvelopeCodec } from '../../wire/codec.js'
import type { Envelope } from '../../wire/envelope.js'
import { createMessageIdFactory } from '../../wire/message-id.js'
import { assertTopicSegment, createTopics, isTopicSegment, topicMatches } from '../../wire/topics.js'
import { backoffDelay, type BackoffOptions } from '../../backoff.js'
import { createLogLimiter } from '../../log-limiter.js'
import { createBridgeStats, createPendingReplies, createStatusHub, snapshotStats } from '../bridge-kit.js'
import { offlinePresence } from '../presence.js'
import { guardPacketSize, type OversizedPacket } from './packet-size-guard.js'

/** Options of an MQTT bridge; only `url` and `deviceId` are required. */
export interface MqttBridgeOptions {
  /** Broker address: `mqtt://host:port` or `mqtts://host:port`. */
  url: string
  deviceId: string
  instanceId?: string
  /** MQTT client id (default: the device id, so the broker keeps one session per device). */
  clientId?: string
  username?: string
  password?: string
  topicPrefix?: string
  /** Largest inbound frame accepted, bytes (default 256 KiB). */
  maxFrameBytes?: number
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
  /**
   * QoS of replies (default 0). A reply only matters while its caller waits, and a caller that
   * lost its connection re-sends its pending commands on reconnect (the device's inbox answers
   * a repeated command id with the cached reply), so replies need no PUBACK of their own:
   * two packets fewer per call. Set 1 to have the broker hold replies for a caller that is away.
   */
  replyQos?: 0 | 1
  /** MQTT protocol level: 4 (3.1.1, default) or 5. */
  protocolVersion?: 4 | 5
  /** Keep the broker session across reconnects (default true: QoS 1 messages wait for the device). */
  persistentSession?: boolean
  /** Extra TLS options for mqtts. */
  tls?: tls.ConnectionOptions
  logger?: Logger
  now?: () => number
}

type MqttClient = MqttClientType
// CommonJS interop differs: Node hands over module.exports as the default, esbuild the
// module's own `default` (it honours __esModule). Accept both.
const clientDefault = (clientModule as unknown as { default: unknown }).default
const MqttClient = (typeof clientDefault === 'function' ? clientDefault : (clientDefault as { default: unknown }).default) as typeof MqttClientType

const NOT_RETAINED = { qos: 1, retain: false } as const
const RETAINED = { qos: 1, retain: true } as const
const AT_MOST_ONCE = { qos: 0, retain: false } as const

/** A command waiting for its reply, kept encoded so it can be sent again. */
interface Unanswered {
  topic: string
  frame: Uint8Array
}

interface LocalSub {
  filter: string
  handler: MessageHandler
  onCleared?: SubscribeOptions['onCleared']
}

/**
 * Creates an MQTT bridge (MQTT.js; MQTT 3.1.1 by default, so it works with aedes and Mosquitto).
 * QoS 1 for commands, events and presence (replies at `replyQos`, 0 by default), TCP_NODELAY on
 * every socket, reconnect with exponential backoff and jitter, a retained birth/last-will
 * presence topic, and an in-flight window. @throws INVALID_CONFIG for a bad url or device id.
 */
export function createMqttBridge(opts: MqttBridgeOptions): Bridge {
  assertTopicSegment('device id', opts.deviceId)
  const url = new URL(opts.url)
  const secure = url.protocol === 'mqtts:'
  if (url.protocol !== 'mqtt:' && !secure) {
    throw new OutpostError(ErrorCode.INVALID_CONFIG, `broker url must start with mqtt:// or mqtts:// (got ${opts.url})`)
  }
  const replyQos = opts.replyQos ?? 0
  // An IPv6 host keeps its brackets in a URL's hostname (`[::1]`); a socket wants the address alone.
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1'
  const port = url.port === '' ? (secure ? 8883 : 1883) : Number(url.port)
  const topics = createTopics(opts.topicPrefix)
  const codec = createEnvelopeCodec({ maxFrameBytes: opts.maxFrameBytes })
  const now = opts.now ?? Date.now
  const instanceId = opts.instanceId ?? createMessageIdFactory()().slice(-10)
  const baseLog = opts.logger ?? pino({ level: 'silent' })
  const log = baseLog.child(baseLog.bindings().device === undefined ? { bridge: 'mqtt', device: opts.deviceId } : { bridge: 'mqtt' })
  const status = createStatusHub()
  const pending = createPendingReplies(now)
  const stats = createBridgeStats()
  const window = Math.max(1, opts.inFlightWindow ?? 256)
  const replyFilter = topics.replyFilter(opts.deviceId)
  // `<prefix>/<src>/rep/<me>`: checked without splitting the topic on every reply.
  const replySuffix = `/rep/${opts.deviceId}`
  const isReplyTopic = (topic: string): boolean =>
    topic.endsWith(replySuffix) && topic.startsWith(`${topics.prefix}/`) && topic.indexOf('/', topics.prefix.length + 1) === topic.length - replySuffix.length
  const subs: LocalSub[] = []
  const routes = new Map<string, LocalSub[]>()
  const inFlightHandlers = new Set<Promise<void>>()
  let inFlightPublishes = 0
  const windowWaiters: (() => void)[] = []
  let drainWaiter: (() => void) | undefined

  let lostConnection = false
  let client: MqttClient | undefined
  let closing = false
  let attempt = 0
  const clientId = opts.clientId ?? opts.deviceId
  const stableMs = opts.stableConnectionMs ?? 10_000
  // Connection trouble and dropped inbound frames: one line per reason a minute, with the count.
  const trouble = createLogLimiter(log)
  // The connection the broker accepted last (a sequence number) and when; undefined once it closed.
  let connection = 0
  let connectedAt: number | undefined
  // Connections in a row the broker closed soon after accepting them.
  let shortLived = 0
  // The broker said why it closed the connection (MQTT 5 DISCONNECT 0x8E: session taken over).
  let takenOver = false
  // We hung up ourselves (resubscribe failed); that close says nothing about a takeover.
  let hungUp = false
  // Filters dropped while disconnected: the broker's session may still hold them.
  const unsubscribeLater = new Set<string>()
  let reconnectTimer: ReturnType<typeof setTimeout> | undefined
  let firstConnect: { resolve(): void; reject(e: OutpostError): void }[] = []

  // Inbound packets are bounded while they are read (packet-size-guard.ts): one larger than a
  // frame plus the largest topic and header is not buffered; it reaches onInbound as a PUBLISH
  // carrying `oversized` (random, so no sender can forge it), is dropped as FRAME_TOO_LARGE and
  // acknowledged, so the broker does not deliver it again.
  const maxPacketBytes = codec.maxFrameBytes + 65_536 + 16
  // Where the sender's level starts in every Outpost topic (`<prefix>/<src>/…`).
  const senderAt = topics.prefix.length + 1
  const oversized = randomBytes(16)
  let lastOversized: OversizedPacket | undefined

  const streamBuilder = (): net.Socket => {
    // [Issue 2] Without TCP_NODELAY, QoS 1 request/reply stalls on delayed ACKs (Nagle).
    const socket = secure
      ? tls.connect({ host, port, servername: host, ...opts.tls })
      : net.connect({ host, port })
    socket.setNoDelay(true)
    guardPacketSize(socket, {
      maxPacketBytes, mode: 'shrink', marker: oversized, protocolVersion: opts.protocolVersion ?? 4,
      onOversized: (p) => {
        lastOversized = p
        // Not a PUBLISH: the connection is closed (a broker sends nothing else that large).
        if (p.type !== 3) trouble.error('packet-too-large', { type: p.type, bytes: p.bytes, limit: maxPacketBytes }, 'the broker sent a packet larger than any frame; connection closed')
      },
    })
    return socket
  }

  // MQTT.js reads the will from its options at every CONNECT, so `declareServices` replaces the
  // payload in place and the next connection carries it.
  const will = {
    topic: topics.presenceTopic(opts.deviceId),
    payload: Buffer.from(codec.encode(offlinePresence(opts.deviceId, instanceId, now()))),
    qos: 1 as const,
    retain: true,
  }

  /**
   * A zero-byte frame clears a retained message [MQTT-3.3.1-10]; the codec rightly refuses it as a
   * frame, so it is only taken here, for subscriptions that asked (presence), with the sender level
   * of its topic as the device. True when someone took it.
   */
  const onClearedFrame = (topic: string): boolean => {
    const takers = routeOf(topic).filter((s) => s.onCleared !== undefined)
    if (takers.length === 0 || !topic.startsWith(`${topics.prefix}/`)) return false
    const end = topic.indexOf('/', senderAt)
    const device = topic.slice(senderAt, end < 0 ? undefined : end)
    if (!isTopicSegment(device)) return false
    for (const sub of takers) {
      try {
        sub.onCleared!(device, topic)
      } catch (err) {
        trouble.error('subscriber-threw', { err, topic: topic.slice(0, 256) }, 'subscriber threw on a cleared retained message')
      }
    }
    return true
  }

  const routeOf = (topic: string): LocalSub[] => {
    let hit = routes.get(topic)
    if (hit === undefined) {
      hit = subs.filter((s) => topicMatches(s.filter, topic))
      if (routes.size > 10_000) routes.clear()
      routes.set(topic, hit)
    }
    return hit
  }

  const onInbound = (topic: string, payload: Buffer, packet: IPublishPacket): Promise<void> | undefined => {
    stats.received++
    if (payload.length === oversized.length && oversized.equals(payload)) {
      // Stands in for a PUBLISH the guard did not read (larger than maxPacketBytes).
      stats.drop(ErrorCode.FRAME_TOO_LARGE)
      trouble.warn(`inbound-${ErrorCode.FRAME_TOO_LARGE}`, { topic: topic.slice(0, 256), code: ErrorCode.FRAME_TOO_LARGE, bytes: lastOversized?.bytes, limit: codec.maxFrameBytes }, 'dropped inbound frame: larger than the frame limit (skipped while it was read)')
      return undefined
    }
    if (payload.length === 0 && onClearedFrame(topic)) return undefined
    const decoded = codec.decode(payload)
    if (!decoded.ok) {
      const code = decoded.error.code
      stats.drop(code)
      // One line per reason a minute under a flood; the counts are in stats().dropped.
      trouble.warn(`inbound-${code}`, { topic: topic.slice(0, 256), code, bytes: payload.length }, `dropped inbound frame: ${decoded.error.message}`)
      return undefined
    }
    const env = decoded.envelope
    // The level after the prefix names the sender, and a broker ACL can make it authentic: a
    // frame that claims another sender (a reply or a presence in someone else's name) is dropped.
    if (!(topic.startsWith(env.src, senderAt) && topic.charCodeAt(senderAt + env.src.length) === 0x2f)) {
      stats.drop('SENDER_MISMATCH')
      trouble.warn('inbound-SENDER_MISMATCH', { topic: topic.slice(0, 256), src: env.src }, 'dropped inbound frame: its src is not the sender its topic names')
      return undefined
    }
    if (env.kind === 'reply' && isReplyTopic(topic)) {
      if (!pending.settle(env)) stats.drop('LATE_REPLY')
      return undefined
    }
    const targets = routeOf(topic)
    if (targets.length === 0) return undefined
    const msg: InboundMessage = { topic, envelope: env, retained: packet.retain === true, redelivered: packet.dup === true }
    let waits: Promise<void>[] | undefined
    for (const sub of targets) {
      try {
        const r = sub.handler(msg)
        if (r !== undefined) (waits ??= []).push(r)
      } catch (err) {
        trouble.error('subscriber-threw', { err, topic: topic.slice(0, 256) }, 'subscriber threw; message acknowledged and dropped')
      }
    }
    if (waits === undefined) return undefined
    const all = Promise.all(waits).then(
      () => {},
      (err: unknown) => trouble.error('subscriber-failed', { err, topic: topic.slice(0, 256) }, 'subscriber failed'),
    )
    inFlightHandlers.add(all)
    void all.finally(() => inFlightHandlers.delete(all))
    return all
  }

  const scheduleReconnect = (): void => {
    if (closing || reconnectTimer !== undefined) return
    attempt++
    const delayMs = backoffDelay(attempt, opts.reconnect)
    status.set({ type: 'reconnecting', attempt, delayMs })
    reconnectTimer = setTimeout(() => {
      reconnectTimer = undefined
      if (closing || client === undefined) return
      status.set({ type: 'connecting', attempt })
      // Keep the stores: QoS 1 messages in flight are resent on the new connection.
      client.reconnect({ incomingStore: client.incomingStore, outgoingStore: client.outgoingStore })
    }, delayMs)
  }

  const start = (): MqttClient => {
    const options: IClientOptions = {
      clientId,
      username: opts.username,
      password: opts.password,
      protocolVersion: opts.protocolVersion ?? 4,
      clean: !(opts.persistentSession ?? true),
      keepalive: opts.keepaliveSec ?? 30,
      connectTimeout: opts.connectTimeoutMs ?? 5_000,
      reconnectPeriod: 0, // MQTT.js retries at a fixed period; we back off with jitter instead
      manualConnect: true,
      resubscribe: false, // we subscribe ourselves on every connect (see 'connect' below)
      will,
      // MQTT.js traces every packet through `debug`; that costs a few % of CPU even when off.
      log: () => {},
      // Otherwise mqtt-packet pre-builds 65,536 two-byte Buffers for packet ids on first write:
      // ~10 MB of heap on a device, to save one small allocation per packet.
      writeCache: false,
    }
    // MQTT 5: the broker is told the largest packet we take, and does not send a larger one
    // [MQTT-3.1.2-24]; the limit counts the whole packet (fixed header up to 5 bytes).
    if (options.protocolVersion === 5) options.properties = { ...options.properties, maximumPacketSize: maxPacketBytes + 5 }
    const c = new MqttClient(streamBuilder as never, options)
    // MQTT.js sends the PUBACK once handleMessage calls back (any protocol level), so calling
    // back after the handler settled gives "acknowledged after committed".
    c.handleMessage = (packet, callback) => {
      const p = onInbound(packet.topic, packet.payload as Buffer, packet)
      if (p === undefined) callback()
      else void p.then(() => callback())
    }
    c.on('connect', (connack) => {
      const seq = ++connection
      connectedAt = Date.now()
      hungUp = false
      takenOver = false
      const sessionPresent = connack.sessionPresent === true
      // Every filter, on every connect, session or not. A broker sends retained messages only in
      // answer to a SUBSCRIBE, never when it restores a session (3.1.1 §3.1.2.4): a process that
      // finds its old session (a restart after SIGTERM or kill -9) would never hear the retained
      // presence of the others. Subscribing to a filter again replaces the subscription without
      // interrupting its flow and re-sends its retained messages [MQTT-3.8.4-3] (aedes and
      // Mosquitto both do); it also covers filters added or dropped while we were away.
      const filters = [replyFilter, ...new Set(subs.map((s) => s.filter))]
      if (unsubscribeLater.size > 0) {
        c.unsubscribe([...unsubscribeLater])
        unsubscribeLater.clear()
      }
      void subscribeOnBroker(c, filters).then(
        () => {
          if (seq !== connection || connectedAt === undefined) return // that connection is gone already
          status.set({ type: 'connected', sessionPresent })
          if (lostConnection) bridge.resendPending()
          lostConnection = false
          const waiters = firstConnect
          firstConnect = []
          for (const w of waiters) w.resolve()
        },
        (err: unknown) => {
          if (seq !== connection || connectedAt === undefined || closing) return
          trouble.error('resubscribe-failed', { err: (err as Error).message }, 'subscribing on the broker failed; reconnecting with backoff')
          hungUp = true
          c.stream?.destroy()
        },
      )
    })
    c.on('disconnect', (packet) => {
      // An MQTT 5 broker may name the reason (DISCONNECT 0x8E); 3.1.1 brokers (and Mosquitto 2 even
      // with MQTT 5) just close the socket, which the close handler judges by how long it lasted.
      if (packet.reasonCode === 0x8e) takenOver = true
    })
    c.on('error', (err) => {
      if (closing) return // errors while hanging up (e.g. "write after end") change nothing
      const wrapped = new OutpostError(ErrorCode.BRIDGE_UNAVAILABLE, `broker ${host}:${port} unreachable: ${err.message}`, { cause: err, retryable: true })
      // The first failure after a loss is worth a warning; each retry after it is not.
      if (attempt <= 1) log.warn({ err: err.message }, 'mqtt connection error; retrying with backoff')
      else log.debug({ err: err.message, attempt }, 'mqtt connection error')
      const waiters = firstConnect
      firstConnect = []
      for (const w of waiters) w.reject(wrapped)
    })
    c.on('close', () => {
      if (closing) return
      lostConnection = true
      const upMs = connectedAt === undefined ? undefined : Date.now() - connectedAt
      connectedAt = undefined
      // A connection that lasted resets the backoff; one closed right after it was accepted does
      // not, so a takeover fight slows down instead of reconnecting at once.
      if (upMs !== undefined && upMs >= stableMs && !takenOver) {
        attempt = 0
        shortLived = 0
      } else if (upMs !== undefined && !hungUp) {
        shortLived++
      }
      if (status.current.type === 'connected') status.set({ type: 'disconnected' })
      scheduleReconnect()
      if (upMs !== undefined && !hungUp && (takenOver || shortLived >= 2)) {
        const delayMs = status.current.type === 'reconnecting' ? status.current.delayMs : undefined
        trouble.warn(
          'taken-over',
          { clientId, upMs, inARow: shortLived, delayMs },
          `the broker keeps closing the connection of client id ${clientId} right after accepting it: another client (a second process of this device?) is probably connected with the same client id; backing off`,
        )
      }
    })
    return c
  }

  const subscribeOnBroker = (c: MqttClient, filters: string[]): Promise<void> =>
    new Promise((resolve, reject) => {
      c.subscribe(filters, { qos: 1 }, (err, granted) => {
        if (err) return reject(new OutpostError(ErrorCode.BRIDGE_UNAVAILABLE, `subscribe failed: ${err.message}`, { cause: err, retryable: true }))
        const refused = (granted ?? []).filter((g) => g.qos === 128)
        if (refused.length > 0) {
          return reject(new OutpostError(ErrorCode.BRIDGE_UNAVAILABLE, `broker refused subscription to ${refused.map((g) => g.topic).join(', ')}`))
        }
        resolve()
      })
    })

  const ensureOpen = (): void => {
    if (closing) throw new OutpostError(ErrorCode.BRIDGE_CLOSED, `bridge of ${opts.deviceId} is closed`)
  }
  const ensureConnected = (): MqttClient => {
    ensureOpen()
    if (client === undefined || status.current.type !== 'connected') {
      throw new OutpostError(ErrorCode.BRIDGE_UNAVAILABLE, `bridge of ${opts.deviceId} is not connected to ${host}:${port}`, { retryable: true })
    }
    return client
  }

  const publishOnce = (c: MqttClient, topic: string, frame: Uint8Array): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      c.publish(topic, frame as Buffer, AT_MOST_ONCE, (err) => {
        if (err) return reject(new OutpostError(ErrorCode.BRIDGE_UNAVAILABLE, `publish to ${topic} failed: ${err.message}`, { cause: err, retryable: true }))
        stats.published++
        resolve()
      })
    })

  const publishFrame = (c: MqttClient, topic: string, frame: Uint8Array, retain: boolean): Promise<void> => {
    if (inFlightPublishes >= window) {
      // Window full: wait for a PUBACK to free a slot, then try again.
      return new Promise<void>((r) => windowWaiters.push(r)).then(() => publishFrame(c, topic, frame, retain))
    }
    inFlightPublishes++
    return new Promise<void>((resolve, reject) => {
      c.publish(topic, frame as Buffer, retain ? RETAINED : NOT_RETAINED, (err) => {
        inFlightPublishes--
        windowWaiters.shift()?.()
        if (inFlightPublishes === 0) drainWaiter?.()
        if (err) return reject(new OutpostError(ErrorCode.BRIDGE_UNAVAILABLE, `publish to ${topic} failed: ${err.message}`, { cause: err, retryable: true }))
        stats.published++
        resolve()
      })
    })
  }

  const bridge: Bridge = {
    deviceId: opts.deviceId,
    instanceId,
    topics,
    get status() {
      return status.current
    },
    connect() {
      ensureOpen()
      if (status.current.type === 'connected') return Promise.resolve()
      const p = new Promise<void>((resolve, reject) => firstConnect.push({ resolve, reject }))
      if (client === undefined) {
        client = start()
        status.set({ type: 'connecting', attempt: 1 })
        client.connect()
      }
      return p
    },
    publish(env, popts) {
      try {
        const c = ensureConnected()
        if (env.kind === 'reply' && replyQos === 0) return publishOnce(c, topics.topicOf(env), codec.encode(env))
        return publishFrame(c, topics.topicOf(env), codec.encode(env), popts?.retain === true)
      } catch (err) {
        return Promise.reject(err)
      }
    },
    publishEncoded(topic, frame, popts) {
      try {
        return publishFrame(ensureConnected(), topic, frame, popts?.retain === true)
      } catch (err) {
        return Promise.reject(err)
      }
    },
    async subscribe(filter, handler, sopts) {
      ensureOpen()
      const sub: LocalSub = { filter, handler, onCleared: sopts?.onCleared }
      subs.push(sub)
      routes.clear()
      unsubscribeLater.delete(filter)
      if (client !== undefined && status.current.type === 'connected') {
        try {
          await subscribeOnBroker(client, [filter])
        } catch (err) {
          subs.splice(subs.indexOf(sub), 1)
          routes.clear()
          throw err
        }
      }
      const subscription: Subscription = {
        filter,
        async unsubscribe() {
          const i = subs.indexOf(sub)
          if (i < 0) return
          subs.splice(i, 1)
          routes.clear()
          if (subs.some((s) => s.filter === filter)) return
          if (client !== undefined && status.current.type === 'connected') {
            await new Promise<void>((r) => client!.unsubscribe(filter, () => r()))
          } else {
            unsubscribeLater.add(filter) // sent on the next connect
          }
        },
      }
      return subscription
    },
    request(command) {
      let c: MqttClient, topic: string, frame: Uint8Array
      try {
        c = ensureConnected()
        topic = topics.topicOf(command)
        frame = codec.encode(command)
      } catch (err) {
        return Promise.reject(err)
      }
      const reply = pending.wait(command, now(), { topic, frame } satisfies Unanswered)
      publishFrame(c, topic, frame, false).catch((err: unknown) => pending.fail(command.id, err as OutpostError))
      return reply
    },
    declareServices(services) {
      will.payload = Buffer.from(codec.encode(offlinePresence(opts.deviceId, instanceId, now(), services)))
    },
    resendPending(target) {
      if (client === undefined || status.current.type !== 'connected') return
      const c = client
      pending.forEach((command, memo) => {
        if (target !== undefined && command.target !== target) return
        const u = memo as Unanswered
        publishFrame(c, u.topic, u.frame, false).catch((err: unknown) => log.warn({ err: (err as Error).message, id: command.id }, 're-send failed'))
      })
    },
    onStatus: (l) => status.on(l),
    statusStream: (signal) => status.stream(signal),
    stats: () => snapshotStats(stats),
    async close(copts) {
      if (closing) return
      const drainMs = copts?.drainMs ?? 5_000
      const connected = status.current.type === 'connected'
      // Stop taking new requests first, then let in-flight work finish.
      const wasClient = client
      closing = true
      if (reconnectTimer !== undefined) clearTimeout(reconnectTimer)
      const timeout = new Promise<void>((r) => setTimeout(r, drainMs).unref())
      await Promise.race([
        Promise.all([
          pending.drained(drainMs),
          Promise.all(inFlightHandlers),
          inFlightPublishes === 0 ? undefined : new Promise<void>((r) => (drainWaiter = r)),
        ]),
        timeout,
      ])
      if (wasClient !== undefined) {
        if (connected && status.current.type === 'connected') {
          // A clean DISCONNECT suppresses the will [MQTT-3.14.4-3], so say goodbye ourselves.
          await new Promise<void>((r) => wasClient.publish(will.topic, will.payload, { qos: 1, retain: true }, () => r()))
        }
        await new Promise<void>((r) => {
          // mqtt.js ends gracefully only once every QoS 1 packet it holds is acknowledged, which
          // never happens without a connection: then end at once (the broker redelivers what it
          // had not acknowledged), and connected or not, never wait longer than drainMs.
          const live = status.current.type === 'connected'
          const t = setTimeout(() => {
            wasClient.stream?.destroy()
            r()
          }, live ? drainMs : 0)
          t.unref()
          wasClient.end(!live, {}, () => {
            clearTimeout(t)
            r()
          })
        })
      }
      const waiters = firstConnect
      firstConnect = []
      const closedErr = new OutpostError(ErrorCode.BRIDGE_CLOSED, `bridge of ${opts.deviceId} closed`)
      for (const w of waiters) w.reject(closedErr)
      pending.failAll(closedErr)
      status.set({ type: 'closed' })
    },
  }
  return bridge
}
