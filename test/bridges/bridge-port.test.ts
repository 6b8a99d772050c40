// The Bridge port suite over every transport: memory, MQTT on a bare aedes, MQTT on Mosquitto.
import { randomBytes } from 'node:crypto'
import mqtt from 'mqtt'
import { createMemoryHub, createMemoryBridge } from '../../runtime/bridges/memory/memory-bridge.js'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { describeBridgePortContract } from '../contracts/bridge-port.contract.js'
import { bareAedes, type BareAedes } from '../helpers/bare-aedes.js'
import { tcpProxy } from '../helpers/tcp-proxy.js'

const fast = { initialMs: 50, maxMs: 200 }

describeBridgePortContract('memory', {
  async createNetwork() {
    const hub = createMemoryHub()
    return {
      prefix: 'mem',
      bridge: (id, o) => createMemoryBridge({ hub, deviceId: id, maxPayloadBytes: o?.maxPayloadBytes }),
      dispose: async () => {},
    }
  },
})

describeBridgePortContract('mqtt over a bare aedes', {
  lossy: true,
  async createNetwork() {
    let broker: BareAedes = await bareAedes()
    const port = Number(new URL(broker.url).port)
    const proxy = await tcpProxy(broker.url)
    return {
      prefix: 'ob',
      bridge: (id, o) => createMqttBridge({ url: o?.cuttable === true ? proxy.url : broker.url, deviceId: id, maxPayloadBytes: o?.maxPayloadBytes, reconnect: fast }),
      cut: () => proxy.cut(),
      brokerDown: () => broker.close(),
      brokerUp: async () => {
        broker = await bareAedes(port)
      },
      dispose: async () => {
        await proxy.close()
        await broker.close()
      },
    }
  },
})

const MOSQUITTO_URL = process.env.OUTPOST_MOSQUITTO_URL ?? 'mqtt://127.0.0.1:1883'

describeBridgePortContract('mqtt over mosquitto', {
  lossy: true,
  async createNetwork() {
    // Mosquitto outlives the test: a topic prefix and client ids of our own keep runs apart.
    const run = randomBytes(4).toString('hex')
    const proxy = await tcpProxy(MOSQUITTO_URL)
    const clientIds: string[] = []
    return {
      prefix: `port-${run}`,
      bridge: (id, o) => {
        const clientId = `${id}-${run}`
        clientIds.push(clientId)
        // Every bridge goes through the proxy: Mosquitto itself is not ours to stop.
        return createMqttBridge({ url: proxy.url, deviceId: id, clientId, maxPayloadBytes: o?.maxPayloadBytes, reconnect: fast })
      },
      cut: () => proxy.cut(),
      brokerDown: () => proxy.down(),
      brokerUp: () => proxy.up(),
      dispose: async () => {
        await proxy.close()
        // The persistent sessions of this run go with it: a clean connect ends a session.
        for (const clientId of clientIds) {
          const c = await mqtt.connectAsync(MOSQUITTO_URL, { clientId, clean: true, reconnectPeriod: 0 })
          await c.endAsync()
        }
      },
    }
  },
})
