import * as v from 'valibot'
import { pino, type Logger } from 'pino'
import { createMqttBridge } from '../runtime/bridges/mqtt/mqtt-bridge.js'
import { createRuntime, defineContract, defineService, type Runtime } from '../runtime/index.js'
import { startMqttBroker, type MqttBroker } from './broker/mqtt-broker.js'

/** A running gateway: the local broker plus a monitor that follows devices and their events. */
export interface Gateway {
  readonly broker: MqttBroker
  readonly runtime: Runtime
  /** Stops the monitor, then the broker; idempotent. */
  close(): Promise<void>
}

export interface GatewayOptions {
  /** MQTT port (default 1883; 0 picks a free port). */
  port?: number
  host?: string
  logger?: Logger
}

const monitorContract = defineContract({ name: 'gateway', version: '1', description: 'Follows the fleet: presence and events.' })

/**
 * Starts the gateway: an embedded aedes broker and a monitor runtime that logs every device
 * that comes and goes and every event it hears. Auth/ACL, persistence, cloud forwarding and
 * exports come with later issues.
 * @throws PORT_IN_USE when the MQTT port is taken.
 */
export async function startGateway(opts: GatewayOptions = {}): Promise<Gateway> {
  const log = opts.logger ?? pino({ base: { device: 'gateway' } })
  const broker = await startMqttBroker({ port: opts.port ?? 1883, host: opts.host })
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
  broker.aedes.on('client', (c) => log.info({ client: c.id }, 'device connected'))
  broker.aedes.on('clientDisconnect', (c) => log.info({ client: c.id }, 'device disconnected'))
  await runtime.start({ waitForBroker: true })
  log.info({ url: broker.url }, 'gateway ready')
  let closed: Promise<void> | undefined
  return {
    broker,
    runtime,
    close() {
      closed ??= (async () => {
        await runtime.stop({ drainMs: 1_000 })
        await broker.close()
      })()
      return closed
    },
  }
}
