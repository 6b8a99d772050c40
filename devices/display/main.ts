// Display device: what its bundle runs. Picks the MQTT bridge and reads configuration.
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createRuntime } from '../../runtime/index.js'
import { redactUrl } from '../../runtime/redact-url.js'
import { deviceLogger, readDeviceConfig, stopOnSignals } from '../device-config.js'
import { createDisplayService } from './display-service.js'

const cfg = readDeviceConfig('display-1')
const log = deviceLogger(cfg)
const bridge = createMqttBridge({ url: cfg.mqttUrl, deviceId: cfg.deviceId, username: cfg.username, password: cfg.password, logger: log })
const runtime = createRuntime({ bridge, services: [createDisplayService()], logger: log })

await runtime.start()
log.info({ url: redactUrl(cfg.mqttUrl) }, 'ready')
stopOnSignals(() => runtime.stop())
