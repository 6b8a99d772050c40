/** Outpost gateway (`outpost/gateway`): the local MQTT broker and the fleet monitor. */
export { startGateway, type Gateway, type GatewayOptions } from './gateway.js'
export { startMqttBroker, type MqttBroker, type MqttBrokerOptions } from './broker/mqtt-broker.js'
