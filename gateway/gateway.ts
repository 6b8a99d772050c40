import type { AedesOptions } from 'aedes'
import aedesPersistence from 'aedes-persistence'
import * as v from 'valibot'
import { pino, type Logger } from 'pino'
import { createMqttBridge } from '../runtime/bridges/mqtt/mqtt-bridge.js'
import { createRuntime, defineContract, defineService, type Runtime } from '../runtime/index.js'
import { startMqttBroker, type MqttBroker } from './broker/mqtt-broker.js'

/** A running gateway: the local broker plus a monitor that follows devices and their events. */
export interface Gateway {
  /** The broker now running (a new one after `interrupt`). */
  readonly broker: MqttBroker
  readonly runtime: Runtime
  /**
   * A drill: stops the broker (every device loses its connection) and starts it again on the
   * same port after `ms`, with the state it had: sessions, subscriptions and the QoS 1 messages
   * queued for devices that were away.
   */
  interrupt(ms: number): Promise<void>
  /** Stops the monitor, then the broker; idempotent. */
  close(): Promise<void>
}

export interface GatewayOptions {
  /** MQTT port (default 1883; 0 picks a free port). */
  port?: number
  host?: string
  logger?: Logger
}

// A CommonJS package whose module.exports is the factory (its typings call it the default export).
const memoryPersistence = aedesPersistence as unknown as () => NonNullable<AedesOptions['persistence']>

const monitorContract = defineContract({ name: 'gateway', version: '1', description: 'Follows the fleet: presence and events.' })

/**
 * Starts the gateway: an embedded aedes broker and a monitor runtime that logs every device
 * that comes and goes and every event it hears. Auth/ACL, persistence, cloud forwarding and
 * exports come with later issues.
 * @throws PORT_IN_USE when the MQTT port is taken.
 */
export async function startGateway(opts: GatewayOptions = {}): Promise<Gateway> {
  const log = opts.logger ?? pino({ base: { device: 'gateway' } })
  // Broker state lives as long as the gateway process, so a restarted broker keeps it.
  const persistence = memoryPersistence()
  const startBroker = async (port: number): Promise<MqttBroker> => {
    const b = await startMqttBroker({ port, host: opts.host, aedes: { persistence } })
    b.aedes.on('client', (c) => log.info({ client: c.id }, 'device connected'))
    b.aedes.on('clientDisconnect', (c) => log.info({ client: c.id }, 'device disconnected'))
    return b
  }
  let broker = await startBroker(opts.port ?? 1883)
  const monitor = defineService(monitorContract, {
    commands: {},
    subscriptions: (s) => ({
      everything: s.pattern({ schema: v.unknown() }, (payload, ctx) => {
        ctx.log.info({ from: ctx.event.device, event: `${ctx.event.service}.${ctx.event.name}`, payload }, 'event')
      }),
    }),
  })
  const runtime = createRuntime({
    bridge: createMqttBridge({ url: broker.url, deviceId: 'gateway', logger: log }),
    services: [monitor],
    logger: log,
  })
  await runtime.start({ waitForBroker: true })
  log.info({ url: broker.url }, 'gateway ready')
  let closed: Promise<void> | undefined
  return {
    get broker() {
      return broker
    },
    runtime,
    async interrupt(ms) {
      const port = broker.port
      log.warn({ forMs: ms }, 'broker stopping (drill)')
      await broker.close()
      await new Promise((r) => setTimeout(r, ms))
      if (closed !== undefined) return
      broker = await startBroker(port)
      log.info({ url: broker.url }, 'broker back')
    },
    close() {
      closed ??= (async () => {
        await runtime.stop({ drainMs: 1_000 })
        await broker.close()
      })()
      return closed
    },
  }
}
