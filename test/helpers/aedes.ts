import { startMqttBroker, type MqttBroker } from '../../gateway/broker/mqtt-broker.js'

/** Starts an in-process aedes broker on a free port. */
export function freshAedes(): Promise<MqttBroker> {
  return startMqttBroker({ port: 0 })
}
