import { randomBytes } from 'node:crypto'
import mqtt from 'mqtt'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createTopics, type Bridge } from '../../runtime/index.js'
import { describeBridgeContract } from '../contracts/bridge.contract.js'
import { freshAedes } from '../helpers/aedes.js'

describeBridgeContract('mqtt over aedes', {
  async createNetwork() {
    const broker = await freshAedes()
    return {
      bridge: (deviceId) => createMqttBridge({ url: broker.url, deviceId }),
      dispose: () => broker.close(),
    }
  },
})

describeBridgeContract('mqtt over aedes, replies at QoS 1', {
  async createNetwork() {
    const broker = await freshAedes()
    return {
      bridge: (deviceId) => createMqttBridge({ url: broker.url, deviceId }),
      messaging: { replyQos: 1 },
      dispose: () => broker.close(),
    }
  },
})

const MOSQUITTO_URL = process.env.OUTPOST_MOSQUITTO_URL ?? 'mqtt://127.0.0.1:1883'

describeBridgeContract('mqtt over mosquitto', {
  async createNetwork() {
    // Mosquitto outlives the test: a topic prefix and client ids of our own keep tests apart.
    const run = randomBytes(4).toString('hex')
    const bridges: Bridge[] = []
    const topics = createTopics(`ob-${run}`)
    return {
      bridge: (deviceId) => {
        const b = createMqttBridge({ url: MOSQUITTO_URL, deviceId: `${deviceId}`, clientId: `${deviceId}-${run}`, persistentSession: false })
        bridges.push(b)
        return b
      },
      messaging: { topicPrefix: topics.prefix },
      dispose: async () => {
        // The retained presence (births and wills) of this run's devices goes with the run: an
        // empty retained message removes it [MQTT-3.3.1-10].
        const c = await mqtt.connectAsync(MOSQUITTO_URL, { clientId: `cleanup-${run}`, clean: true, reconnectPeriod: 0 })
        for (const b of bridges) await c.publishAsync(topics.presenceTopic(b.deviceId), Buffer.alloc(0), { qos: 1, retain: true })
        await c.endAsync()
      },
    }
  },
})
