// The three systems of the cross-process benchmark, each as a responder and a caller.
import net from 'node:net'
import { Decoder, Encoder } from 'cbor-x'
import mqtt from 'mqtt'
import { createMqttBridge } from '../../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createRuntime } from '../../../runtime/index.js'
import { ingestContract, ingestService, payload } from '../workload.js'

export interface Caller {
  call(): Promise<unknown>
  close(): Promise<void>
}

/** Two bare mqtt.js clients, QoS 1 both ways, cbor-x payloads, TCP_NODELAY: the ceiling. */
async function rawClient(url: string, id: string): Promise<mqtt.MqttClient> {
  const c = await mqtt.connectAsync(url, { clientId: id, reconnectPeriod: 0 })
  ;(c.stream as net.Socket).setNoDelay?.(true)
  return c
}

export const systems = {
  raw: {
    async respond(url: string): Promise<() => Promise<void>> {
      const c = await rawClient(url, 'raw-responder')
      const enc = new Encoder({ useRecords: false })
      const dec = new Decoder({ useRecords: false })
      let n = 0
      c.on('message', (_t, buf) => {
        const req = dec.decode(buf) as { id: number; to: string; p: unknown }
        c.publish(`bench/res/${req.to}`, enc.encode({ id: req.id, r: { ok: true, n: ++n } }) as Buffer, { qos: 1 })
      })
      await c.subscribeAsync('bench/req/+', { qos: 1 })
      return () => c.endAsync()
    },
    async caller(url: string): Promise<Caller> {
      const c = await rawClient(url, 'raw-caller')
      const enc = new Encoder({ useRecords: false })
      const dec = new Decoder({ useRecords: false })
      const waiting = new Map<number, (v: unknown) => void>()
      let next = 0
      c.on('message', (_t, buf) => {
        const res = dec.decode(buf) as { id: number; r: unknown }
        waiting.get(res.id)?.(res.r)
        waiting.delete(res.id)
      })
      await c.subscribeAsync('bench/res/raw-caller', { qos: 1 })
      return {
        call: () => new Promise((resolve) => {
          const id = ++next
          waiting.set(id, resolve)
          c.publish('bench/req/add', enc.encode({ id, to: 'raw-caller', p: payload() }) as Buffer, { qos: 1 })
        }),
        close: () => c.endAsync(),
      }
    },
  },
  outpost: {
    async respond(url: string): Promise<() => Promise<void>> {
      const rt = createRuntime({ bridge: createMqttBridge({ url, deviceId: 'device' }), services: [ingestService()] })
      await rt.start({ waitForBroker: true })
      return () => rt.stop()
    },
    async caller(url: string): Promise<Caller> {
      const rt = createRuntime({ bridge: createMqttBridge({ url, deviceId: 'caller' }), discoveryWaitMs: 5_000 })
      await rt.start({ waitForBroker: true })
      const client = rt.client(ingestContract)
      await client.add(payload())
      return { call: () => client.add(payload()), close: () => rt.stop() }
    },
  },
  moleculer: {
    async respond(url: string): Promise<() => Promise<void>> {
      const { ServiceBroker } = await import('moleculer')
      const broker = new ServiceBroker({ nodeID: 'device', transporter: { type: 'MQTT', options: { ...mqttOptions(url), qos: 1 } } as never, logger: false, validator: true })
      let n = 0
      broker.createService({
        name: 'ingest',
        actions: { add: { params: { deviceId: 'string', reading: 'number', ts: 'number' }, handler: () => ({ ok: true, n: ++n }) } },
      })
      await broker.start()
      noDelay(broker)
      return () => broker.stop()
    },
    async caller(url: string): Promise<Caller> {
      const { ServiceBroker } = await import('moleculer')
      const broker = new ServiceBroker({ nodeID: 'caller', transporter: { type: 'MQTT', options: { ...mqttOptions(url), qos: 1 } } as never, logger: false })
      await broker.start()
      noDelay(broker)
      await broker.waitForServices('ingest', 10_000)
      return { call: () => broker.call('ingest.add', payload()), close: () => broker.stop() }
    },
  },
} as const

export type SystemName = keyof typeof systems

/** Moleculer's MQTT transporter takes mqtt.js options; QoS 1 like the others (its default is 0). */
function mqttOptions(url: string): { host: string; port: number } {
  const u = new URL(url)
  return { host: u.hostname, port: Number(u.port) }
}

/** TCP_NODELAY on Moleculer's MQTT socket too, or its QoS 1 round trips wait on delayed ACKs (~88 ms). */
function noDelay(broker: unknown): void {
  const client = (broker as { transit?: { tx?: { client?: { stream?: net.Socket } } } }).transit?.tx?.client
  client?.stream?.setNoDelay?.(true)
}
