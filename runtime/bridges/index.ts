/**
 * The bridges a runtime moves frames over (`outpost/bridges`): the memory bridge, for several
 * runtimes in one process (tests, one device with many services), and the MQTT bridge, for
 * devices that talk through a broker. Both implement the frames-only `Bridge` port; the runtime
 * builds its envelope layer (runtime/messaging/) on whichever it is given. Importing this entry
 * loads the MQTT client; a program that only needs the memory bridge can take it from
 * `outpost/runtime` instead.
 */
export { createMemoryHub, createMemoryBridge, type MemoryHub, type MemoryBridgeOptions } from './memory/memory-bridge.js'
export { createMqttBridge, type MqttBridgeOptions } from './mqtt/mqtt-bridge.js'
export type { Bridge, BridgeStatus, BridgeStats, InboundFrame, FrameHandler, PublishOptions, Subscription } from '../ports/bridge.js'
