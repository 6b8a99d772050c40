import type { IClientOptions, IPublishPacket } from 'mqtt'
import { pino } from 'pino'
import { ErrorCode, OutpostError, errorMessage, isOutpostError } from '../../errors.js'
import type { Bridge, FrameHandler, InboundFrame, PublishOptions, Subscription } from '../../ports/bridge.js'
import { assertTopicSegment } from '../../wire/topics.js'
import { backoffDelay } from '../../backoff.js'
import { createLogLimiter } from '../../log-limiter.js'
import { systemClock } from '../../ports/clock.js'
import { createBridgeStats, createRoutes, createStatusHub, DEFAULT_MAX_PAYLOAD_BYTES, snapshotStats } from '../bridge-kit.js'
import type { OversizedPacket } from './packet-size-guard.js'
import { createMqttSockets } from './mqtt-socket.js'
import { loadedMqttClient, loadMqttClient, parseBrokerUrl, type MqttBridgeOptions, type MqttClient, type MqttClientClass } from './mqtt-options.js'
import { createPublishWindow } from './publish-window.js'
import { createDirectPublisher } from './direct-publisher.js'

export type { MqttBridgeOptions } from './mqtt-options.js'

interface LocalSub {
  filter: string
  handler: FrameHandler
}

/** One inbound PUBLISH, as every matching subscriber gets it (one object, shared). */
class MqttFrame implements InboundFrame {
  constructor(
    readonly topic: string,
    readonly payload: Uint8Array,
    readonly retained: boolean,
    readonly redelivered: boolean,
  ) {}
}

/**
 * A SUBACK that refused filters (0x80): the broker's ACL (the gateway's role table), or a broker
 * that cannot take the topic at all (nats-server refuses a level holding '.' or a space, such as a
 * service version "1.0"). Typed NOT_AUTHORIZED: retrying the same filters gets the same answer.
 */
const refusedSubscription = (filters: string[], cause: Error | undefined): OutpostError => {
  const unusual = filters.some((f) => f.split('/').some((level) => level.includes('.') || level.includes(' ')))
  const hint = unusual ? " (a level holding '.' or a space is refused by some brokers, e.g. nats-server's MQTT listener: use versions such as \"1\" or \"v1_0\")" : " (is the device's role on the gateway allowed to subscribe to it?)"
  return new OutpostError(ErrorCode.NOT_AUTHORIZED, `broker refused subscription to ${filters.join(', ')}${hint}`, { cause, details: { filters } })
}

/**
 * Creates an MQTT bridge (MQTT.js; MQTT 3.1.1 by default, so it works with aedes and Mosquitto):
 * frames on topics at QoS 1 or 0, TCP_NODELAY on every socket, reconnect with exponential
 * backoff and jitter, a persistent session, every subscription renewed on every connect, a last
 * will, an in-flight window, and inbound packets bounded while they are read.
 * @throws INVALID_CONFIG for a bad url or device id.
 */
export function createMqttBridge(opts: MqttBridgeOptions): Bridge {
  assertTopicSegment('device id', opts.deviceId)
  const { host, port, secure } = parseBrokerUrl(opts.url)
  const maxPayloadBytes = opts.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES
  const baseLog = opts.logger ?? pino({ level: 'silent' })
  const log = baseLog.child(baseLog.bindings().device === undefined ? { bridge: 'mqtt', device: opts.deviceId } : { bridge: 'mqtt' })
  const status = createStatusHub()
  const stats = createBridgeStats()
  // `callerResends` publishes are written here (direct-publisher.ts), with packet ids shared with MQTT.js.
  const direct = createDirectPublisher(opts.protocolVersion ?? 4)
  const publishes = createPublishWindow(opts.inFlightWindow ?? 256, () => stats.published++, direct)
  const routes = createRoutes<LocalSub>()
  const inFlightHandlers = new Set<Promise<void>>()
  // QoS 1 packet ids whose handlers are running (not yet acknowledged), and those that were when
  // the last connection was lost: the broker of a persistent session sends them again, with the
  // DUP flag or (aedes) without it, so such a packet is marked redelivered either way.
  const unacked = new Set<number>()
  let suspects: Set<number> | undefined

  let client: MqttClient | undefined
  // MQTT.js is being loaded for the first connection (no client yet).
  let loading = false
  let closing = false
  let attempt = 0
  const clientId = opts.clientId ?? opts.deviceId
  const stableMs = opts.stableConnectionMs ?? 10_000
  const clock = opts.clock ?? systemClock
  // Connection trouble and dropped inbound frames: one line per reason a minute, with the count.
  const trouble = createLogLimiter(log, { clock })
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
  let reconnectTimer: (() => void) | undefined // cancels the armed reconnect
  let firstConnect: { resolve(): void; reject(e: OutpostError): void }[] = []

  // Inbound packets are bounded while they are read (packet-size-guard.ts): one larger than a
  // payload plus the largest topic and header is not buffered; it reaches onInbound as a PUBLISH
  // carrying `sockets.oversized`, is dropped as FRAME_TOO_LARGE and acknowledged.
  const maxPacketBytes = maxPayloadBytes + 65_536 + 16
  let lastOversized: OversizedPacket | undefined
  const sockets = createMqttSockets({
    host, port, secure, tls: opts.tls, maxPacketBytes, protocolVersion: opts.protocolVersion ?? 4, onPuback: direct.puback,
    onOversized: (p) => {
      lastOversized = p
      // Not a PUBLISH: the connection is closed (a broker sends nothing else that large).
      if (p.type !== 3) trouble.error('packet-too-large', { type: p.type, bytes: p.bytes, limit: maxPacketBytes }, 'the broker sent a packet larger than any frame; connection closed')
    },
  })
  const oversized = sockets.oversized

  // MQTT.js reads the will from its options at every CONNECT, so `setWill` takes effect at the
  // next connection.
  let will: { topic: string; payload: Buffer; qos: 0 | 1; retain: boolean } | undefined

  /** An inbound frame too large to take: dropped, counted, logged at a bounded rate, and acknowledged. */
  const tooLarge = (topic: string, bytes: number | undefined, skipped: boolean): undefined => {
    stats.drop(ErrorCode.FRAME_TOO_LARGE)
    trouble.warn(
      `inbound-${ErrorCode.FRAME_TOO_LARGE}`,
      { topic: topic.slice(0, 256), code: ErrorCode.FRAME_TOO_LARGE, bytes, limit: maxPayloadBytes },
      skipped ? 'dropped inbound frame: larger than the frame limit (skipped while it was read)' : `dropped inbound frame: frame of ${bytes} bytes exceeds the ${maxPayloadBytes}-byte limit`,
    )
    return undefined
  }

  const onInbound = (topic: string, payload: Buffer, packet: IPublishPacket): Promise<void> | undefined => {
    stats.received++
    // Stands in for a PUBLISH the guard did not read (larger than maxPacketBytes).
    if (payload.length === oversized.length && oversized.equals(payload)) return tooLarge(topic, lastOversized?.bytes, true)
    if (payload.length > maxPayloadBytes) return tooLarge(topic, payload.length, false)
    const targets = routes.match(topic)
    if (targets.length === 0) return undefined
    const id = packet.messageId
    // The suspect id is used up by this packet even when it carries DUP: left in the set, it would
    // mark the next new packet that reuses the id as redelivered (nats-server resends with DUP).
    const suspect = suspects !== undefined && id !== undefined && suspects.delete(id)
    const again = packet.dup === true || suspect
    const frame = new MqttFrame(topic, payload, packet.retain === true, again)
    let waits: Promise<void>[] | undefined
    for (const sub of targets) {
      try {
        const r = sub.handler(frame)
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
    if (packet.qos === 1 && id !== undefined) unacked.add(id)
    void all.finally(() => {
      inFlightHandlers.delete(all)
      if (id !== undefined) unacked.delete(id)
    })
    return all
  }

  const scheduleReconnect = (): void => {
    if (closing || reconnectTimer !== undefined) return
    attempt++
    const delayMs = backoffDelay(attempt, opts.reconnect)
    status.set({ type: 'reconnecting', attempt, delayMs })
    reconnectTimer = clock.setTimer(clock.now() + delayMs, () => {
      reconnectTimer = undefined
      if (closing || client === undefined) return
      status.set({ type: 'connecting', attempt })
      // Keep the stores: QoS 1 messages in flight are resent on the new connection.
      client.reconnect({ incomingStore: client.incomingStore, outgoingStore: client.outgoingStore })
    })
  }

  const start = (MqttClientClass: MqttClientClass): MqttClient => {
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
      // MQTT.js re-arms the keepalive timer on every packet it sends or receives, ~2 µs per PUBACK
      // on a drain; without that a PINGREQ simply goes out every `keepalive` seconds, traffic or not.
      reschedulePings: false,
      messageIdProvider: direct.ids,
    }
    // MQTT 5: the broker is told the largest packet we take, and does not send a larger one
    // [MQTT-3.1.2-24]; the limit counts the whole packet (fixed header up to 5 bytes).
    if (options.protocolVersion === 5) options.properties = { ...options.properties, maximumPacketSize: maxPacketBytes + 5 }
    const c = new MqttClientClass(sockets.open as never, options)
    // MQTT.js sends the PUBACK once handleMessage calls back (any protocol level), so calling
    // back after the handler settled gives "acknowledged after committed".
    c.handleMessage = (packet, callback) => {
      const p = onInbound(packet.topic, packet.payload as Buffer, packet)
      if (p === undefined) callback()
      else void p.then(() => callback())
    }
    c.on('connect', (connack) => {
      const seq = ++connection
      connectedAt = clock.now()
      hungUp = false
      takenOver = false
      const sessionPresent = connack.sessionPresent === true
      // Without its session the broker sends nothing again.
      if (!sessionPresent) suspects = undefined
      // Every filter, on every connect, session or not. A broker sends retained messages only in
      // answer to a SUBSCRIBE, never when it restores a session (3.1.1 §3.1.2.4): a process that
      // finds its old session (a restart after SIGTERM or kill -9) would never hear the retained
      // presence of the others. Subscribing to a filter again replaces the subscription without
      // interrupting its flow and re-sends its retained messages [MQTT-3.8.4-3] (aedes and
      // Mosquitto both do); it also covers filters added or dropped while we were away.
      const filters = [...new Set(routes.all.map((s) => s.filter))]
      if (unsubscribeLater.size > 0) {
        c.unsubscribe([...unsubscribeLater])
        unsubscribeLater.clear()
      }
      void (filters.length === 0 ? Promise.resolve() : subscribeOnBroker(c, filters)).then(
        () => {
          if (seq !== connection || connectedAt === undefined) return // that connection is gone already
          status.set({ type: 'connected', sessionPresent })
          const waiters = firstConnect
          firstConnect = []
          for (const w of waiters) w.resolve()
        },
        (err: unknown) => {
          if (seq !== connection || connectedAt === undefined || closing) return
          trouble.error('resubscribe-failed', { err: errorMessage(err) }, 'subscribing on the broker failed; reconnecting with backoff')
          // A refusal will not go away by waiting for it: whoever waits for the first connection
          // (start with waitForBroker) hears it now, typed. The bridge keeps trying, so a role an
          // operator widens on the gateway takes effect without restarting the device.
          if (isOutpostError(err, ErrorCode.NOT_AUTHORIZED)) {
            const waiters = firstConnect
            firstConnect = []
            for (const w of waiters) w.reject(err)
          }
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
      direct.lost('connection lost')
      if (closing) return
      suspects = unacked.size > 0 ? new Set(unacked) : undefined
      const upMs = connectedAt === undefined ? undefined : clock.now() - connectedAt
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
        // MQTT.js 5 turns a SUBACK that refuses a filter (0x80) into an error carrying the packet,
        // whose message ("Unspecified error") names no filter; the log should say which one
        // (nats-server refuses any filter with a '.' or a space in a level, e.g. a version "1.0").
        const codes = (err as { packet?: { granted?: unknown } } | undefined)?.packet?.granted
        const named = err && Array.isArray(codes) ? filters.filter((_, i) => codes[i] === 128) : (granted ?? []).filter((g) => g.qos === 128).map((g) => g.topic)
        if (named.length > 0) return reject(refusedSubscription(named, err ?? undefined))
        if (err) return reject(new OutpostError(ErrorCode.BRIDGE_UNAVAILABLE, `subscribe failed: ${err.message}`, { cause: err, retryable: true }))
        resolve()
      })
    })

  const ensureOpen = (): void => {
    if (closing) throw new OutpostError(ErrorCode.BRIDGE_CLOSED, `bridge of ${opts.deviceId} is closed`)
  }
  const ensureConnected = (): MqttClient => {
    ensureOpen()
    // A connection the broker accepted takes publishes while its subscriptions are being
    // restored: a broker hands a restored session's QoS 1 commands over at once, before the
    // SUBACK that turns the status `connected`, and their replies must be able to go out.
    if (client === undefined || (status.current.type !== 'connected' && connectedAt === undefined)) {
      throw new OutpostError(ErrorCode.BRIDGE_UNAVAILABLE, `bridge of ${opts.deviceId} is not connected to ${host}:${port}`, { retryable: true })
    }
    return client
  }

  const bridge: Bridge = {
    deviceId: opts.deviceId,
    maxPayloadBytes,
    get status() {
      return status.current
    },
    connect() {
      try {
        ensureOpen()
      } catch (err) {
        return Promise.reject(err)
      }
      if (status.current.type === 'connected') return Promise.resolve()
      const p = new Promise<void>((resolve, reject) => firstConnect.push({ resolve, reject }))
      if (client === undefined && !loading) {
        const begin = (Client: MqttClientClass): void => {
          client = start(Client)
          if (status.current.type !== 'connecting') status.set({ type: 'connecting', attempt: 1 })
          client.connect()
        }
        const loaded = loadedMqttClient()
        if (loaded !== undefined) {
          begin(loaded)
        } else {
          // MQTT.js is loaded at the first connection (see loadMqttClient); meanwhile the bridge
          // is connecting, and a close settles whoever waits.
          loading = true
          status.set({ type: 'connecting', attempt: 1 })
          loadMqttClient().then(
            (Client) => {
              loading = false
              if (!closing) begin(Client)
            },
            (err: unknown) => {
              loading = false
              const waiters = firstConnect
              firstConnect = []
              const failed = new OutpostError(ErrorCode.BRIDGE_UNAVAILABLE, `the MQTT client could not be loaded: ${errorMessage(err)}`, { cause: err })
              for (const w of waiters) w.reject(failed)
            },
          )
        }
      }
      return p
    },
    publish(topic, payload, popts?: PublishOptions) {
      try {
        const c = ensureConnected()
        if (popts?.qos === 0) return publishes.once(c, topic, payload, popts.retain === true)
        return publishes.acked(c, topic, payload, popts?.retain === true, popts?.callerResends === true)
      } catch (err) {
        return Promise.reject(err)
      }
    },
    async subscribe(filter, handler) {
      ensureOpen()
      const sub: LocalSub = { filter, handler }
      routes.add(sub)
      unsubscribeLater.delete(filter)
      if (client !== undefined && status.current.type === 'connected') {
        try {
          await subscribeOnBroker(client, [filter])
        } catch (err) {
          routes.remove(sub)
          throw err
        }
      }
      const subscription: Subscription = {
        filter,
        async unsubscribe() {
          if (!routes.remove(sub)) return
          if (routes.all.some((s) => s.filter === filter)) return
          if (client !== undefined && status.current.type === 'connected') {
            await new Promise<void>((r) => client!.unsubscribe(filter, () => r()))
          } else {
            unsubscribeLater.add(filter) // sent on the next connect
          }
        },
      }
      return subscription
    },
    setWill(topic, payload, wopts) {
      will = { topic, payload: Buffer.from(payload), qos: wopts?.qos ?? 1, retain: wopts?.retain === true }
      if (client !== undefined) client.options.will = will
    },
    onStatus: (l) => status.on(l),
    statusStream: (signal) => status.stream(signal),
    stats: () => snapshotStats(stats),
    async close(copts) {
      if (closing) return
      const drainMs = copts?.drainMs ?? 5_000
      // Stop taking new work first, then let in-flight work finish.
      const wasClient = client
      closing = true
      reconnectTimer?.()
      let timer: ReturnType<typeof setTimeout> | undefined
      await Promise.race([
        Promise.all([Promise.all(inFlightHandlers), publishes.drained()]),
        new Promise<void>((r) => (timer = setTimeout(r, drainMs))),
      ])
      clearTimeout(timer)
      if (wasClient !== undefined) {
        await new Promise<void>((r) => {
          // mqtt.js ends gracefully only once every QoS 1 packet it holds is acknowledged, which
          // never happens without a connection: then end at once (the broker redelivers what it
          // had not acknowledged), and connected or not, never wait longer than drainMs. A clean
          // DISCONNECT suppresses the will [MQTT-3.14.4-3].
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
      status.set({ type: 'closed' })
    },
  }
  return bridge
}
