import type { Logger } from 'pino'
import { ErrorCode, errorMessage, isOutpostError, OutpostError } from '../runtime/errors.js'
import { DEVICE_DIR_ENV, READY_REPORT } from '../runtime/launcher/launcher.js'
import { codeCacheReady } from '../runtime/launcher/code-cache.js'
import { createLogger, parseLogFormat, parseLogLevel, type LogFormat } from '../runtime/logger.js'
import type { Bridge, BridgeStatus } from '../runtime/ports/bridge.js'

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

/** How the broker connection stands, as the `ready` line says it. */
const brokerState = (s: BridgeStatus): string =>
  s.type === 'connected' ? 'connected' : s.type === 'idle' || s.type === 'connecting' ? 'connecting' : s.type === 'closed' ? 'closed' : 'offline'

/** Resolves once the bridge's first connection attempt has an outcome: connected, or failed (it keeps trying). */
function firstAttempt(bridge: Pick<Bridge, 'status' | 'onStatus'>): Promise<void> {
  const settled = (s: BridgeStatus): boolean => s.type !== 'idle' && s.type !== 'connecting'
  if (settled(bridge.status)) return Promise.resolve()
  return new Promise((resolve) => {
    const off = bridge.onStatus((s) => {
      if (!settled(s)) return
      off()
      resolve()
    })
  })
}

/**
 * Says that the device is ready: its `ready` log line, and `outpost:ready` over IPC when the
 * device launcher (runtime/launcher) started it (a log level above info hides the line).
 *
 * Ready means the device serves local work: its database is open and its runtime started
 * (commands between its own services, schedules, queue workers, events into the outbox). The
 * broker connection may still be under way: `broker` in the line says `connected`,
 * `connecting` or `offline`, and `connected to the broker` follows once it is up.
 *
 * Started by the launcher, which keeps a new bundle once it reports ready and rolls back one
 * that does not in time, the device first waits for the outcome of its first connection
 * attempt, whichever it is: a bundle that crashes or hangs while it connects is rolled back,
 * and one that finds no broker still runs offline, and is kept.
 */
export async function reportReady(
  log: Logger,
  bridge: Pick<Bridge, 'status' | 'onStatus'>,
  fields: Record<string, unknown> = {},
  env: NodeJS.ProcessEnv = process.env,
  send: ((message: string) => void) | undefined = typeof process.send === 'function' ? (m) => void process.send!(m) : undefined,
): Promise<void> {
  const launched = env[DEVICE_DIR_ENV] !== undefined && send !== undefined
  if (launched) await firstAttempt(bridge)
  // Stopped meanwhile (a signal while it connected): not ready, and not to be kept.
  if (bridge.status.type === 'closed') return
  log.info({ ...fields, broker: brokerState(bridge.status) }, 'ready')
  if (launched) send(READY_REPORT)
  flushCompileCache()
  codeCacheReady()
}

/**
 * Writes the code compiled so far into Node's compile cache (NODE_COMPILE_CACHE, which the
 * launcher sets) now, not only when the process exits cleanly: a device that only ever stops by
 * losing power starts from the cache too. Node 22.10 and later; a no-op before, and without a cache.
 */
function flushCompileCache(): void {
  const nodeModule = process.getBuiltinModule?.('node:module') as { flushCompileCache?: () => void } | undefined
  if (typeof nodeModule?.flushCompileCache !== 'function') return
  setImmediate(() => {
    try {
      nodeModule.flushCompileCache!()
    } catch {} // a full or read-only disk: the next start compiles, as without a cache
  }).unref()
}

/**
 * Stops the runtime on SIGINT/SIGTERM, then exits. A device started with an IPC channel (as the
 * CLI's demo starts its devices) also stops when that channel closes: its parent has gone, even
 * by SIGKILL, and a device left running with nobody reading its output would hold its
 * database and its broker session.
 */
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

/**
 * What a device does with an error that stops it starting: an OutpostError ends the process
 * with one log line naming its code, and exit code 2 for a wrong variable (BAD_ARGUMENT, as
 * the README promises), 1 for anything else (a storage error); anything else is a bug and is
 * thrown on, with its stack.
 */
export function exitOnStartError(log: Logger): (err: unknown) => never {
  return (err) => {
    if (!isOutpostError(err)) throw err
    log.fatal({ code: err.code }, `${err.code}: ${err.message}`)
    process.exit(err.code === ErrorCode.BAD_ARGUMENT ? 2 : 1)
  }
}
