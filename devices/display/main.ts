// Display device: what its bundle runs. Picks the MQTT bridge and reads configuration.
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createRuntime } from '../../runtime/index.js'
import { otaWhenLaunched } from '../../runtime/ota/ota-service.js'
import { redactUrl } from '../../runtime/redact-url.js'
import { deviceLogger, exitOnStartError, reportReady, readDeviceConfig, stopOnSignals } from '../device-config.js'
import { createDisplayService } from './display-service.js'

const cfg = readDeviceConfig('display-1')
const log = deviceLogger(cfg)
// A typed error (a broker URL that is not one) ends the start with one line and its exit code.
const exit = exitOnStartError(log)
const bridge = (() => {
  try {
    return createMqttBridge({ url: cfg.mqttUrl, deviceId: cfg.deviceId, username: cfg.username, password: cfg.password, logger: log })
  } catch (err) {
    return exit(err)
  }
})()
// Started by the launcher: over-the-air flashing through the gateway too (ota@1).
const runtime = createRuntime({ bridge, services: [createDisplayService(), ...otaWhenLaunched()], logger: log })

// Ready once it serves local work; the broker connection is made after, in the background
// (see reportReady for what the launcher waits for). A function rather than top-level await, so
// that the bundle may be an ES module or CommonJS; a failure is thrown on, with its stack.
void (async () => {
  await runtime.start({ connectInBackground: true })
  stopOnSignals(() => runtime.stop())
  await reportReady(log, bridge, { url: redactUrl(cfg.mqttUrl) })
})()
