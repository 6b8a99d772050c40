// The Bridge port suite and the runtime-level bridge suite over nats-server's MQTT listener
// (JetStream-backed sessions and retained messages), started per test from the installed binary:
// devices must also run against a clustered broker that is not Outpost's gateway.
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { describeBridgeContract } from '../contracts/bridge.contract.js'
import { describeBridgePortContract } from '../contracts/bridge-port.contract.js'
import { startNatsMqtt } from '../helpers/nats-mqtt.js'
import { tcpProxy } from '../helpers/tcp-proxy.js'

const fast = { initialMs: 50, maxMs: 200 }

describeBridgePortContract('mqtt over nats-server', {
  lossy: true,
  // A frame matching two filters of a session comes twice (nats-mqtt-gaps.test.ts shows it, and
  // that the runtime runs each handler once all the same).
  capabilities: { copyPerSubscription: true },
  async createNetwork() {
    // nats-server 2.9 sends a QoS 1 frame left unacknowledged at a connection loss again when its
    // ack_wait runs out (default 30 s), not when the session resumes (nats-mqtt-gaps.test.ts
    // pins that down); 2 s lets the redelivery test see it within its 10 s.
    const nats = await startNatsMqtt({ mqtt: ['ack_wait: "2s"'] })
    const proxy = await tcpProxy(nats.url)
    return {
      prefix: 'ob',
      bridge: (id, o) => createMqttBridge({ url: o?.cuttable === true ? proxy.url : nats.url, deviceId: id, maxPayloadBytes: o?.maxPayloadBytes, reconnect: fast }),
      cut: () => proxy.cut(),
      // The real thing: the server process goes away and comes back on the same ports and store.
      brokerDown: () => nats.stop(),
      brokerUp: () => nats.restart(),
      dispose: async () => {
        await proxy.close()
        await nats.dispose()
      },
    }
  },
})

describeBridgeContract('mqtt over nats-server', {
  async createNetwork() {
    const nats = await startNatsMqtt()
    return {
      bridge: (deviceId) => createMqttBridge({ url: nats.url, deviceId }),
      dispose: () => nats.dispose(),
    }
  },
})
