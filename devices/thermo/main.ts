// Thermo device: what its bundle runs. Picks the MQTT bridge and the SQLite stores, reads configuration.
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { otaWhenLaunched } from '../../runtime/ota/ota-service.js'
import { createRuntimeWithStores } from '../../runtime/service/runtime-with-stores.js'
import { createSqliteInbox, createSqliteOutbox, createSqliteQueueStore, createSqliteStateStore } from '../../runtime/stores/sqlite/index.js'
import { openDeviceStore, readStoreOptions } from '../device-database.js'
import { redactUrl } from '../../runtime/redact-url.js'
import { deviceLogger, exitOnStartError, reportReady, parseSampleMs, readDeviceConfig, stopOnSignals } from '../device-config.js'
import { createThermoService, simulatedSensor } from './thermo-service.js'

const cfg = readDeviceConfig('thermo-1')
const log = deviceLogger(cfg)
const exit = exitOnStartError(log)
let sampleMs = 2_000
try {
  const raw = process.env.OUTPOST_SAMPLE_MS
  if (raw !== undefined && raw !== '') sampleMs = parseSampleMs(raw, 'OUTPOST_SAMPLE_MS')
} catch (err) {
  exit(err)
}
// A function rather than top-level await, so that the bundle may be an ES module or CommonJS.
async function main(): Promise<void> {
  // The bridge first (it connects at start): a broker URL that is not one stops the device before
  // its database is made. Then the database, with its device lock: a second process for the same
  // device stops there, before it connects to the broker and takes the first one's session away.
  const bridge = createMqttBridge({ url: cfg.mqttUrl, deviceId: cfg.deviceId, username: cfg.username, password: cfg.password, logger: log })
  const database = await openDeviceStore(cfg, log, readStoreOptions())
  // Every store is given (createRuntime without the memory stores it would default to, which the bundle then leaves out).
  const runtime = createRuntimeWithStores({
    bridge,
    // Started by the launcher: over-the-air flashing through the gateway too (ota@1).
    services: [createThermoService({ deviceId: cfg.deviceId, sampleMs }), ...otaWhenLaunched()],
    resources: { sensor: simulatedSensor() },
    stateStore: createSqliteStateStore(database),
    // Sampling jobs live here: a slot that fell due is sampled once, even across a power cut.
    queueStore: createSqliteQueueStore(database),
    // Events and job results produced while the broker is away wait here and go out in order when it is back.
    outbox: createSqliteOutbox(database),
    // Commands it answered are remembered across restarts: one delivered again is not run twice.
    inbox: createSqliteInbox(database),
    logger: log,
  })

  // Ready once it serves local work (sampling, its queue, the outbox); the broker connection is
  // made after, in the background (see reportReady for what the launcher waits for).
  await runtime.start({ connectInBackground: true })
  stopOnSignals(async () => {
    await runtime.stop()
    database.close()
  })
  await reportReady(log, bridge, { url: redactUrl(cfg.mqttUrl), sampleMs })
}

// A typed error (a bad variable, the database locked, in use, full or read-only) ends the start
// with one line and its exit code; anything else is thrown on, with its stack.
void main().catch(exit)
