import type { Logger } from 'pino'
import { ErrorCode, errorMessage, OutpostError } from '../runtime/errors.js'
import { DEVICE_DIR_ENV, READY_REPORT } from '../runtime/launcher/launcher.js'
import { createLogger, parseLogFormat, parseLogLevel, type LogFormat } from '../runtime/logger.js'

/** What every demo device reads from its environment. */
export interface DeviceConfig {
  deviceId: string
  mqttUrl: string
  logLevel: string
  /** OUTPOST_LOG_FORMAT: `json` or `pretty`; unset, readable on a terminal and JSON when piped. */
  logFormat?: string
  /** OUTPOST_MQTT_USERNAME, else the user name in the URL. */
  username?: string
  /** OUTPOST_MQTT_PASSWORD, else the password in the URL (never logged: see runtime/redact-url.ts). */
  password?: string
  /** Where the device database lives (OUTPOST_DATA_DIR, default .outpost). */
  dataDir: string
}

/** Reads device configuration from environment variables (OUTPOST_*), with defaults. */
export function readDeviceConfig(defaultId: string, env: NodeJS.ProcessEnv = process.env): DeviceConfig {
  const mqttUrl = env.OUTPOST_MQTT_URL ?? 'mqtt://127.0.0.1:1883'
  // mqtt://user:password@host: the bridge connects to host and port only, so credentials in the URL are taken from it here.
  const inUrl = URL.canParse(mqttUrl) ? new URL(mqttUrl) : undefined
  const fromUrl = (s: string | undefined): string | undefined => (s === undefined || s === '' ? undefined : decodeURIComponent(s))
  // A variable set to nothing counts as not set (as the gateway takes them): `FOO= cmd` in a
  // shell must not replace the credentials in the URL with an empty user name.
  const set = (v: string | undefined): string | undefined => (v === '' ? undefined : v)
  return {
    deviceId: env.OUTPOST_DEVICE_ID ?? defaultId,
    mqttUrl,
    logLevel: set(env.OUTPOST_LOG_LEVEL) ?? 'info',
    logFormat: set(env.OUTPOST_LOG_FORMAT),
    username: set(env.OUTPOST_MQTT_USERNAME) ?? fromUrl(inUrl?.username),
    password: set(env.OUTPOST_MQTT_PASSWORD) ?? fromUrl(inUrl?.password),
    dataDir: env.OUTPOST_DATA_DIR ?? '.outpost',
  }
}

/** Longest interval a Node timer keeps (2^31 - 1 ms); a longer one fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1

/**
 * A sampling interval (OUTPOST_SAMPLE_MS), checked: a whole number of milliseconds from 1 to 2147483647.
 * @throws BAD_ARGUMENT naming `where` and what is accepted
 */
export function parseSampleMs(value: string, where: string): number {
  const ms = /^\d{1,10}$/.test(value) ? Number(value) : NaN
  if (!(ms >= 1 && ms <= MAX_TIMER_MS)) {
    throw new OutpostError(ErrorCode.BAD_ARGUMENT, `${where} "${value}" is not accepted; expected a whole number of milliseconds from 1 to ${MAX_TIMER_MS} (default 2000)`)
  }
  return ms
}

/**
 * The device's root logger on stdout: readable lines on a terminal, JSON lines when piped (as
 * under the CLI, which formats them) or as OUTPOST_LOG_FORMAT says. A level or format it does
 * not know is not worth refusing to start over: it says so in one line and uses the default.
 */
export function deviceLogger(cfg: DeviceConfig): Logger {
  const problems: string[] = []
  const checked = <T>(parse: () => T): T | undefined => {
    try {
      return parse()
    } catch (err) {
      problems.push(errorMessage(err))
      return undefined
    }
  }
  const level = checked(() => parseLogLevel(cfg.logLevel, 'OUTPOST_LOG_LEVEL')) ?? 'info'
  const format: LogFormat | undefined = cfg.logFormat === undefined ? undefined : checked(() => parseLogFormat(cfg.logFormat!, 'OUTPOST_LOG_FORMAT'))
  const log = createLogger({ name: cfg.deviceId, level, format })
  for (const p of problems) log.warn(`${p}; using the default`)
  return log
}

/** How long a device whose parent has gone waits for its own stop before it exits anyway, ms. */
const ORPHAN_EXIT_MS = 5_000

/**
 * Stops the runtime on SIGINT/SIGTERM, then exits. A device started with an IPC channel (as the
 * CLI's demo starts its devices) also stops when that channel closes: its parent has gone, even
 * by SIGKILL, and a device left running with nobody reading its output would hold its
 * database and its broker session.
 */
/**
 * Tells the device launcher (runtime/launcher) that this device is ready, over IPC, when the
 * launcher started it: its `ready` log line says the same, but a log level above info hides it,
 * and a new bundle that never says so is rolled back.
 */
export function reportReady(): void {
  if (process.env[DEVICE_DIR_ENV] !== undefined && typeof process.send === 'function') process.send(READY_REPORT)
}

export function stopOnSignals(stop: () => Promise<void>): void {
  let stopping = false
  const onSignal = (): void => {
    if (stopping) return
    stopping = true
    void stop().finally(() => process.exit(0))
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  if (process.channel !== undefined) {
    // The channel only watches the parent; it must not keep the device alive by itself.
    process.channel.unref()
    const onParentGone = (): void => {
      setTimeout(() => process.exit(0), ORPHAN_EXIT_MS)
      onSignal()
    }
    if (process.connected) process.once('disconnect', onParentGone)
    else onParentGone()
  }
}
