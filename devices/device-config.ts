import { pino, type Logger } from 'pino'

/** What every demo device reads from its environment. */
export interface DeviceConfig {
  deviceId: string
  mqttUrl: string
  logLevel: string
  username?: string
  password?: string
  /** Where the device database lives (OUTPOST_DATA_DIR, default .outpost). */
  dataDir: string
}

/** Reads device configuration from environment variables (OUTPOST_*), with defaults. */
export function readDeviceConfig(defaultId: string, env: NodeJS.ProcessEnv = process.env): DeviceConfig {
  return {
    deviceId: env.OUTPOST_DEVICE_ID ?? defaultId,
    mqttUrl: env.OUTPOST_MQTT_URL ?? 'mqtt://127.0.0.1:1883',
    logLevel: env.OUTPOST_LOG_LEVEL ?? 'info',
    username: env.OUTPOST_MQTT_USERNAME,
    password: env.OUTPOST_MQTT_PASSWORD,
    dataDir: env.OUTPOST_DATA_DIR ?? '.outpost',
  }
}

/** The device's root logger (JSON lines on stdout). */
export function deviceLogger(cfg: DeviceConfig): Logger {
  return pino({ level: cfg.logLevel, base: { device: cfg.deviceId } })
}

/** Stops the runtime on SIGINT/SIGTERM, then exits. */
export function stopOnSignals(stop: () => Promise<void>): void {
  let stopping = false
  const onSignal = (): void => {
    if (stopping) return
    stopping = true
    void stop().finally(() => process.exit(0))
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
}
