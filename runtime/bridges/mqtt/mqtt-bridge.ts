import { pino } from 'pino'
import { ErrorCode, OutpostError, errorMessage, isOutpostError } from '../../errors.js'
import type { Bridge, PublishOptions, Subscription } from '../../ports/bridge.js'
import { assertTopicSegment } from '../../wire/topics.js'
import { createLogLimiter } from '../../log-limiter.js'
import { systemClock } from '../../ports/clock.js'
import { createBridgeStats, createRoutes, createStatusHub, DEFAULT_MAX_PAYLOAD_BYTES, snapshotStats } from '../bridge-kit.js'
import { createMqttSockets } from './mqtt-socket.js'
import { loadedMqttClient, loadMqttClient, mqttClientOptions, parseBrokerUrl, type MqttBridgeOptions, type MqttClient, type MqttClientClass } from './mqtt-options.js'
import { createMqttInbound, subscribeOnBroker, type LocalSub } from './mqtt-inbound.js'
import { createReconnects, createWaiters } from './mqtt-reconnect.js'
import { createPublishWindow } from './publish-window.js'
import { createDirectPublisher } from './direct-publisher.js'

export type { MqttBridgeOptions } from './mqtt-options.js'

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

  let client: MqttClient | undefined
  // MQTT.js is being loaded for the first connection (no client yet).
  let loading = false
  let closing = false
  const clientId = opts.clientId ?? opts.deviceId
  const clock = opts.clock ?? systemClock
  // Connection trouble and dropped inbound frames: one line per reason a minute, with the count.
  const trouble = createLogLimiter(log, { clock })
  // Filters dropped while disconnected: the broker's session may still hold them.
  const unsubscribeLater = new Set<string>()
  const firstConnect = createWaiters()
  const reconnects = createReconnects({
    status, clock, backoff: opts.reconnect, stableMs: opts.stableConnectionMs ?? 10_000, clientId, trouble,
    reconnect(attempt) {
      if (client === undefined) {
        // MQTT.js could not be loaded last time: try again (see connect).
        if (!loading) {
          status.set({ type: 'connecting', attempt })
          loadClient()
        }
        return
      }
      status.set({ type: 'connecting', attempt })
      // Keep the stores: QoS 1 messages in flight are resent on the new connection.
      client.reconnect({ incomingStore: client.incomingStore, outgoingStore: client.outgoingStore })
    },
  })

  // Inbound PUBLISH packets, bounded while they are read (mqtt-inbound.ts).
  const inbound = createMqttInbound({ maxPayloadBytes, routes, stats, trouble })
  const onPublish = inbound.onPublish // read once, not per packet
  const sockets = createMqttSockets({
    host, port, secure, tls: opts.tls, protocolVersion: opts.protocolVersion ?? 4, onPuback: direct.puback,
    maxPacketBytes: inbound.maxPacketBytes, marker: inbound.marker, onOversized: inbound.onOversized,
  })

  // MQTT.js reads the will from its options at every CONNECT, so `setWill` takes effect at the
  // next connection.
  let will: { topic: string; payload: Buffer; qos: 0 | 1; retain: boolean } | undefined

  const start = (MqttClientClass: MqttClientClass): MqttClient => {
    const options = mqttClientOptions(opts, { clientId, will, ids: direct.ids, maxPacketBytes: inbound.maxPacketBytes })
    const c = new MqttClientClass(sockets.open as never, options)
    // MQTT.js sends the PUBACK once handleMessage calls back (any protocol level), so calling
    // back after the handler settled gives "acknowledged after committed".
    c.handleMessage = (packet, callback) => {
      const p = onPublish(packet.topic, packet.payload as Buffer, packet)
      if (p === undefined) callback()
      // Left unacknowledged (the runtime is stopping): called back with the error, MQTT.js sends
      // no PUBACK (the broker sends the message again) and goes on with the packets behind it (the
      // PUBACKs of our own publishes among them). Not called back, it read nothing more.
      else void p.then(() => callback(), (err: Error) => callback(err))
    }
    c.on('connect', (connack) => {
      const seq = reconnects.accepted()
      const sessionPresent = connack.sessionPresent === true
      // Without its session the broker sends nothing again.
      if (!sessionPresent) inbound.sessionLost()
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
          if (!reconnects.isCurrent(seq)) return // that connection is gone already
          status.set({ type: 'connected', sessionPresent })
          firstConnect.resolve()
        },
        (err: unknown) => {
          if (!reconnects.isCurrent(seq) || closing) return
          trouble.error('resubscribe-failed', { err: errorMessage(err) }, 'subscribing on the broker failed; reconnecting with backoff')
          // A refusal will not go away by waiting for it: whoever waits for the first connection
          // (start with waitForBroker) hears it now, typed. The bridge keeps trying, so a role an
          // operator widens on the gateway takes effect without restarting the device.
          if (isOutpostError(err, ErrorCode.NOT_AUTHORIZED)) firstConnect.reject(err)
          reconnects.hangingUp()
          c.stream?.destroy()
        },
      )
    })
    c.on('disconnect', (packet) => {
      // An MQTT 5 broker may name the reason (DISCONNECT 0x8E); 3.1.1 brokers (and Mosquitto 2 even
      // with MQTT 5) just close the socket, which the close handler judges by how long it lasted.
      if (packet.reasonCode === 0x8e) reconnects.takenOver()
    })
    c.on('error', (err) => {
      if (closing) return // errors while hanging up (e.g. "write after end") change nothing
      // A CONNACK that refuses the login (3.1.1: 4, 5; MQTT 5: 134, 135) is no unreachable broker.
      const refused = [4, 5, 134, 135].includes((err as { code?: unknown }).code as number)
      const wrapped = new OutpostError(
        ErrorCode.BRIDGE_UNAVAILABLE,
        refused ? `broker ${host}:${port} refused the login: ${err.message}; check the device's user and password (OUTPOST_MQTT_URL) and that the broker knows it` : `broker ${host}:${port} unreachable: ${err.message}`,
        { cause: err, retryable: true },
      )
      // The first failure after a loss is worth a warning; each retry after it is not.
      const attempt = reconnects.attempt
      if (attempt <= 1) log.warn({ err: err.message }, 'mqtt connection error; retrying with backoff')
      else log.debug({ err: err.message, attempt }, 'mqtt connection error')
      firstConnect.reject(wrapped)
      // What MQTT.js reports here leaves the connection unusable (a packet its parser refused, a
      // protocol error, a refused login). MQTT has the receiver close it [MQTT-4.8.0-1]; MQTT.js
      // does not always, and a device that kept it would hear nothing more, nor get its publishes
      // acknowledged. Closed, it reconnects with backoff; the outbox sends again what was not acked.
      if (c.stream !== undefined && !c.stream.destroyed) {
        if (reconnects.up) reconnects.hangingUp()
        c.stream.destroy()
      }
    })
    c.on('close', () => {
      direct.lost('connection lost')
      if (closing) return
      inbound.connectionLost()
      reconnects.lost()
    })
    return c
  }

  /**
   * Loads MQTT.js, then connects. A failure (a broken install: a dependency of MQTT.js missing)
   * is told to whoever waits for the first connection and logged at most once a minute; the
   * bridge tries again with the reconnect backoff, as it would for a broker it cannot reach, so
   * the device goes on serving local work and does not end by itself.
   */
  function loadClient(): void {
    loading = true
    loadMqttClient().then(
      (Client) => {
        loading = false
        if (closing) return
        client = start(Client)
        client.connect()
      },
      (err: unknown) => {
        loading = false
        const e = new OutpostError(ErrorCode.BRIDGE_UNAVAILABLE, `the MQTT client could not be loaded: ${errorMessage(err)}`, { cause: err, retryable: true })
        if (reconnects.attempt > 0) trouble.error('client-not-loaded', { err: e.message }, 'the MQTT client could not be loaded; trying again with backoff')
        firstConnect.reject(e)
        if (!closing) reconnects.lost()
      },
    )
  }

  const ensureOpen = (): void => {
    if (closing) throw new OutpostError(ErrorCode.BRIDGE_CLOSED, `bridge of ${opts.deviceId} is closed`)
  }
  const ensureConnected = (): MqttClient => {
    ensureOpen()
    // A connection the broker accepted takes publishes while its subscriptions are being
    // restored: a broker hands a restored session's QoS 1 commands over at once, before the
    // SUBACK that turns the status `connected`, and their replies must be able to go out.
    if (client === undefined || (status.current.type !== 'connected' && !reconnects.up)) {
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
      const p = firstConnect.wait()
      // (After MQTT.js failed to load, the next try is armed already: `reconnecting`.)
      if (client === undefined && !loading && status.current.type !== 'reconnecting') {
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
          status.set({ type: 'connecting', attempt: 1 })
          loadClient()
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
      reconnects.stop()
      let timer: ReturnType<typeof setTimeout> | undefined
      await Promise.race([
        Promise.all([Promise.all(inbound.inFlight), publishes.drained()]),
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
      firstConnect.reject(new OutpostError(ErrorCode.BRIDGE_CLOSED, `bridge of ${opts.deviceId} closed`))
      status.set({ type: 'closed' })
    },
  }
  return bridge
}
