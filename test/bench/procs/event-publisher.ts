// Device load of the forwarding bench (forward.ts): one process standing for devices that each
// send `per` Outpost events over MQTT, QoS 1, `window` in flight per device, each device on its
// own connection. By default through Outpost's own MQTT transport (runtime/bridges/mqtt), as a
// device's outbox drain sends them: the PUBLISH packets written by the transport itself, the
// frame held by the caller (`callerResends`). With `client: 'mqtt.js'`, a bare MQTT.js client
// (`publishAsync`, as before session 34: about twice the CPU a device spends). Connects, prints
// "ready", starts on SIGUSR2, prints "done <CPU µs spent publishing>" once every publish was
// acknowledged, and exits.
import type net from 'node:net'
import mqtt from 'mqtt'
import { createMqttBridge } from '../../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createEnvelopeCodec } from '../../../runtime/wire/codec.js'

const opts = JSON.parse(process.argv[2]!) as { url: string; devices: string[]; per: number; tag: string; window: number; client?: 'outpost' | 'mqtt.js' }
const codec = createEnvelopeCodec()

const lists = opts.devices.map((dev) => ({
  dev,
  frames: Array.from({ length: opts.per }, (_, i) =>
    Buffer.from(codec.encode({ v: 1, kind: 'event', id: `${opts.tag}-${dev}-${i}`, src: dev, inst: 'bench', at: Date.now(), service: 'meter', version: '1', name: 'reading', payload: { n: i, value: 21.5, unit: 'C' } })),
  ),
}))
/** One device's connection: publishes a frame and resolves with its PUBACK. */
type Publish = (topic: string, frame: Uint8Array) => Promise<unknown>
const clients: { publish: Publish; end: () => Promise<unknown> }[] = await Promise.all(
  opts.devices.map(async (dev) => {
    if (opts.client === 'mqtt.js') {
      const c = await mqtt.connectAsync(opts.url, { clientId: dev, clean: true, reconnectPeriod: 0, connectTimeout: 30_000 })
      ;(c.stream as net.Socket).setNoDelay?.(true)
      return { publish: (topic, frame) => c.publishAsync(topic, frame as Buffer, { qos: 1 }), end: () => c.endAsync() }
    }
    const b = createMqttBridge({ url: opts.url, deviceId: dev, inFlightWindow: opts.window })
    await b.connect()
    return { publish: (topic, frame) => b.publish(topic, frame, { qos: 1, callerResends: true }), end: () => b.close() }
  }),
)
const go = new Promise<void>((r) => process.once('SIGUSR2', () => r()))
process.stdout.write('ready\n')
await go
const cpu0 = process.cpuUsage()
await Promise.all(
  lists.map(async ({ dev, frames }, k) => {
    const c = clients[k]!
    let next = 0
    await Promise.all(
      Array.from({ length: opts.window }, async () => {
        while (next < frames.length) await c.publish(`ob/${dev}/evt/meter/1/reading`, frames[next++]!)
      }),
    )
  }),
)
const cpu = process.cpuUsage(cpu0)
await Promise.all(clients.map((c) => c.end()))
// The CPU (user + system, µs) this process spent publishing: the devices' share of the machine.
process.stdout.write(`done ${cpu.user + cpu.system}\n`)
process.exit(0)
