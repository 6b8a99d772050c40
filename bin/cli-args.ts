// The CLI's arguments and the environment variables it reads, checked before anything runs:
// every value a user can get wrong becomes one BAD_ARGUMENT line that names it and says what
// is accepted, never a stack trace from deep inside.
import { existsSync, readdirSync, statSync } from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'
import type { LevelWithSilent } from 'pino'
import { parseSampleMs } from '../devices/device-config.js'
import { checkForwardTarget, FORWARD_VERBS, PURGE_ALL } from './forward.js'
import { parseBuildArgs, parseFlashArgs, parseKeysArgs, type BuildArgs, type BundleArgsContext, type FlashArgs, type KeysArgs } from './cli-args-bundle.js'
// The bundle commands' argument types, where the CLI's other types are.
export type { BuildArgs, FlashArgs, KeysArgs, OtaArgs } from './cli-args-bundle.js'
import { readStoreOptions } from '../devices/device-database.js'
import type { GatewayConfig } from '../gateway/config/gateway-config.js'
import { loadGatewayConfig, parseHost, parsePort } from '../gateway/config/load-config.js'
import { RESERVED_DEVICE_IDS } from '../gateway/gateway.js'
import { closeTo } from './close-to.js'
import { ErrorCode, OutpostError } from '../runtime/errors.js'
import { redactUrl } from '../runtime/redact-url.js'
import { parseLogFormat, parseLogLevel, type LogFormat } from '../runtime/logger.js'

/** The commands `outpost` knows. */
export const COMMANDS = ['demo', 'gateway', 'device', 'devices', 'forward', 'jobs', 'build', 'keys', 'flash', 'help'] as const
/** One of COMMANDS. */
export type Command = (typeof COMMANDS)[number]

/** What the command line asks for, every value checked. */
export interface CliArgs {
  /** `undefined`: no command was given. */
  command?: Command
  /** `--help` (or `outpost help <command>`): show the help of `command` and do nothing else. */
  help: boolean
  version: boolean
  /** Positionals after the command (for `jobs` and `devices`, the verb and its arguments). */
  rest: string[]
  port?: number
  host?: string
  durationS?: number
  outageAfterS?: number
  outageS?: number
  /** For `demo`: OUTPOST_SAMPLE_MS, passed on to its thermo device. */
  sampleMs?: number
  /** Broker URL for `device` (--url or OUTPOST_MQTT_URL). */
  url?: string
  /** Device id for `device` (--id or OUTPOST_DEVICE_ID). */
  id?: string
  /** For `device`: a name that has devices/<name>/main.js (main.ts in the sources). */
  device?: string
  /** Absolute folder for device databases (OUTPOST_DATA_DIR, default .outpost), for `demo` and `device`. */
  dataDir?: string
  db?: string
  limit?: string
  json?: boolean
  logLevel?: LevelWithSilent
  logFormat?: LogFormat
  /**
   * For `gateway` and `devices`: the configuration from --config (or OUTPOST_GATEWAY_CONFIG) and the
   * environment, with --port, --host and --log-level over it; the development defaults without a file.
   */
  gatewayConfig?: GatewayConfig
  /** For `gateway`: print the effective configuration and exit. */
  printConfig?: boolean
  /** For `forward`: the target whose queue or dead letters to look at. */
  target?: string
  /** For `devices add`: the role to give. */
  role?: string
  /** For `build`: what to build and how (checked here as far as the command line tells; see bin/build-cmd.ts). */
  build?: BuildArgs
  /** For `keys generate`. */
  keys?: KeysArgs
  /** For `flash`. */
  flash?: FlashArgs
}

const OPTIONS = {
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
  'log-level': { type: 'string' },
  'log-format': { type: 'string' },
  port: { type: 'string' },
  host: { type: 'string' },
  duration: { type: 'string' },
  'outage-after': { type: 'string' },
  outage: { type: 'string' },
  url: { type: 'string' },
  id: { type: 'string' },
  db: { type: 'string' },
  limit: { type: 'string' },
  json: { type: 'boolean' },
  config: { type: 'string' },
  'print-config': { type: 'boolean' },
  role: { type: 'string' },
  target: { type: 'string' },
  out: { type: 'string' },
  key: { type: 'string' },
  unsigned: { type: 'boolean' },
  'budget-kb': { type: 'string' },
  'gzip-budget-kb': { type: 'string' },
  'build-time': { type: 'string' },
  addon: { type: 'string' },
  platform: { type: 'string' },
  arch: { type: 'string' },
  force: { type: 'boolean' },
  'change-device': { type: 'boolean' },
  to: { type: 'string' },
  device: { type: 'string' },
  gateway: { type: 'string' },
  token: { type: 'string' },
  'chunk-kb': { type: 'string' },
  wait: { type: 'string' },
  all: { type: 'boolean' },
} as const
type OptionName = keyof typeof OPTIONS

const EVERYWHERE: readonly OptionName[] = ['help', 'version', 'log-level', 'log-format']
const PER_COMMAND: Record<Command, readonly OptionName[]> = {
  demo: ['port', 'host', 'duration', 'outage-after', 'outage'],
  gateway: ['port', 'host', 'config', 'print-config'],
  device: ['url', 'id'],
  devices: ['config', 'role', 'json'],
  forward: ['config', 'target', 'limit', 'json', 'all'],
  jobs: ['db', 'limit', 'json'],
  build: ['out', 'key', 'unsigned', 'budget-kb', 'gzip-budget-kb', 'build-time', 'addon', 'platform', 'arch'],
  keys: ['out', 'force'],
  flash: ['to', 'key', 'json', 'device', 'gateway', 'token', 'chunk-kb', 'wait', 'change-device'],
  help: [],
}

/** Device names: a folder under devices/ with a main file, never a path. */
const DEVICE_NAME = /^[a-z0-9][a-z0-9-]*$/
/** What `outpost device` (OUTPOST_DEVICE_ID) takes as a device id: it becomes a topic level and a file name (no separators, no wildcards, bounded). */
export const DEVICE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/
/** What a device's MQTT bridge connects with (runtime/bridges/mqtt). */
const BROKER_PROTOCOLS = ['mqtt:', 'mqtts:']
/** Longest delay a Node timer keeps (2^31 - 1 ms); a longer one fires at once. */
const MAX_SECONDS = Math.floor((2 ** 31 - 1) / 1_000)

const bad = (message: string): OutpostError => new OutpostError(ErrorCode.BAD_ARGUMENT, message)

// Ports and hosts are read as the gateway's config loader reads its variables: one wording.
const portOf = parsePort
const hostOf = parseHost

function secondsOf(value: string, where: string, min: 'positive' | 'zero'): number {
  const n = /^\d+(\.\d+)?$/.test(value) ? Number(value) : NaN
  if (!(n <= MAX_SECONDS) || (min === 'positive' && n === 0)) {
    throw bad(`${where} "${value}" is not accepted; expected a number of seconds from ${min === 'positive' ? 'above 0' : '0'} to ${MAX_SECONDS}`)
  }
  return n
}

function urlOf(value: string, where: string): string {
  let url: URL | undefined
  try {
    url = new URL(value)
  } catch {
    url = undefined
  }
  if (url === undefined || !BROKER_PROTOCOLS.includes(url.protocol) || url.hostname === '') {
    // The value may hold a password: it is echoed without it.
    throw bad(`${where} "${redactUrl(value)}" is not a broker URL; expected mqtt://host:port or mqtts://host:port`)
  }
  return value
}

function idOf(value: string, where: string): string {
  if (!DEVICE_ID.test(value)) throw bad(`${where} "${value}" is not a device id; expected letters, digits, '.', '_' or '-' (at most 128, starting with a letter or digit)`)
  // Two clients with one id take each other's session in turns; these ids are the gateway's own.
  if (RESERVED_DEVICE_IDS.includes(value)) throw bad(`${where} "${value}" is reserved for the gateway; choose another device id (not ${RESERVED_DEVICE_IDS.join(', ')})`)
  return value
}

/** The folder must be a folder, or creatable: no file where it, or a folder above it, should be. */
function dataDirOf(value: string, where: string): string {
  const dir = path.resolve(value)
  for (let p = dir; ; p = path.dirname(p)) {
    if (existsSync(p)) {
      if (!statSync(p).isDirectory()) {
        throw bad(p === dir
          ? `${where} "${value}" is a file; expected a folder for the device databases (it is created if missing)`
          : `${where} "${value}" cannot be a folder: ${p} is a file`)
      }
      return dir
    }
    if (p === path.dirname(p)) return dir
  }
}

/** Where the devices are: `dir/<name>/<main>` is a device's entry point. */
export interface DeviceFolder {
  dir: string
  /** `main.js` for the compiled CLI, `main.ts` for its sources. */
  main: string
}

function deviceOf(value: string | undefined, devices: DeviceFolder): string {
  const isDevice = (n: string): boolean => DEVICE_NAME.test(n) && existsSync(path.join(devices.dir, n, devices.main))
  const known = (): string =>
    readdirSync(devices.dir)
      .filter(isDevice)
      .sort()
      .join(', ')
  if (value === undefined) throw bad(`outpost device needs a device name; expected one of ${known()}`)
  if (!isDevice(value)) {
    throw bad(`device "${value}" is not a device of this project; expected one of ${known()} (a name under devices/, not a path)`)
  }
  return value
}

/** A variable's value, with an empty one taken as unset. */
const envOf = (env: NodeJS.ProcessEnv, name: string): string | undefined => (env[name] === '' ? undefined : env[name])

/**
 * Reads and checks the command line and the OUTPOST_* variables the command uses.
 * @throws BAD_ARGUMENT naming the option, argument or variable and what it accepts
 */
export function parseCliArgs(argv: string[], env: NodeJS.ProcessEnv, devices: DeviceFolder): CliArgs {
  const { tokens } = parseArgs({ args: argv, options: OPTIONS, strict: false, allowPositionals: true, tokens: true })
  const positionals: string[] = []
  const values: Partial<Record<OptionName, string | boolean>> = {}
  for (const t of tokens) {
    if (t.kind === 'positional') positionals.push(t.value)
    if (t.kind !== 'option') continue
    if (!Object.hasOwn(OPTIONS, t.name)) {
      const near = t.rawName.startsWith('--') ? closeTo(t.name, Object.keys(OPTIONS)) : undefined
      throw bad(`unknown option ${t.rawName}${near === undefined ? '' : ` (did you mean --${near}?)`}; see outpost --help`)
    }
    const name = t.name as OptionName
    let value: string | boolean = true
    if (OPTIONS[name].type === 'boolean') {
      if (t.inlineValue === true) throw bad(`${t.rawName} takes no value (got "${String(t.value)}")`)
    } else {
      // Without `=`, parseArgs takes the next word even when it is another option.
      if (t.value === undefined || (t.inlineValue !== true && t.value.startsWith('--'))) throw bad(`${t.rawName} needs a value; see outpost --help`)
      value = t.value
    }
    // `--port 1 --port 2` took the last one without a word.
    if (Object.hasOwn(values, name)) throw bad(`--${name} is given twice; give it once`)
    values[name] = value
  }
  const str = (name: OptionName): string | undefined => values[name] as string | undefined

  const first = positionals[0]
  let command = COMMANDS.find((c) => c === first)
  if (first !== undefined && command === undefined) {
    const near = closeTo(first, COMMANDS.filter((c) => c !== 'help'))
    throw bad(`unknown command "${first}"${near === undefined ? '' : ` (did you mean ${near}?)`}; expected one of ${COMMANDS.join(', ')}`)
  }
  let rest = positionals.slice(1)
  let help = values.help === true
  if (command === 'help') {
    // `outpost help jobs` is `outpost jobs --help`.
    help = true
    command = COMMANDS.find((c) => c === rest[0] && c !== 'help')
    rest = []
  }
  const args: CliArgs = { command, help, version: values.version === true, rest }
  if (help || args.version) return args

  const allowed = new Set([...EVERYWHERE, ...(command === undefined ? [] : PER_COMMAND[command])])
  for (const name of Object.keys(values) as OptionName[]) {
    if (allowed.has(name)) continue
    const where = command === undefined ? 'outpost' : `outpost ${command}`
    throw bad(`--${name} is not an option of ${where}; see ${where} --help`)
  }
  const level = str('log-level') ?? envOf(env, 'OUTPOST_LOG_LEVEL')
  if (level !== undefined) args.logLevel = parseLogLevel(level, str('log-level') !== undefined ? '--log-level' : 'OUTPOST_LOG_LEVEL')
  const format = str('log-format') ?? envOf(env, 'OUTPOST_LOG_FORMAT')
  if (format !== undefined) args.logFormat = parseLogFormat(format, str('log-format') !== undefined ? '--log-format' : 'OUTPOST_LOG_FORMAT')

  const either = (name: OptionName, variable: string): [string, string] | undefined => {
    const flag = str(name)
    if (flag !== undefined) return [flag, `--${name}`]
    const v = envOf(env, variable)
    return v === undefined ? undefined : [v, variable]
  }
  const bundleContext = (): BundleArgsContext => ({
    rest,
    str: (name) => str(name as OptionName),
    flag: (name) => values[name as OptionName] === true,
    either: (name, variable) => either(name as OptionName, variable),
    deviceOf: (name) => deviceOf(name, devices),
    idOf,
    secondsOf,
  })
  if (str('out') === '') throw bad('--out needs a folder (got an empty value)')
  switch (command) {
    case 'gateway':
    case 'forward':
    case 'devices': {
      if (command === 'gateway' && rest.length > 0) throw bad(`outpost gateway takes no arguments (got "${rest[0]}")`)
      // The file's values, then the variables over them (the loader), then the options over both.
      const file = str('config') ?? envOf(env, 'OUTPOST_GATEWAY_CONFIG')
      const config = loadGatewayConfig({ file, env })
      if (str('port') !== undefined) config.mqtt.port = args.port = portOf(str('port')!, '--port')
      if (str('host') !== undefined) config.mqtt.host = args.host = hostOf(str('host')!, '--host')
      if (args.logLevel !== undefined) config.log.level = args.logLevel
      if (args.logFormat !== undefined) config.log.format = args.logFormat
      args.gatewayConfig = config
      args.printConfig = values['print-config'] === true
      args.json = values.json === true
      if (str('role') !== undefined) args.role = str('role')
      const limit = str('limit')
      if (limit !== undefined && !/^[1-9]\d{0,8}$/.test(limit)) throw bad(`--limit "${limit}" is not accepted; expected a whole number from 1 to 999999999`)
      if (limit !== undefined) args.limit = limit
      if (command === 'forward') {
        const verb = rest[0]
        // Taken and ignored before: `forward purge --limit 5` deleted every dead letter.
        if (limit !== undefined && verb !== undefined && verb !== 'dead' && (FORWARD_VERBS as readonly string[]).includes(verb)) throw bad(`--limit is an option of outpost forward dead only, not of ${verb}`)
        if (values.all === true && verb !== undefined && verb !== 'purge' && (FORWARD_VERBS as readonly string[]).includes(verb)) throw bad(`--all is an option of outpost forward purge only, not of ${verb}`)
        if (str('target') !== undefined && verb !== undefined && (FORWARD_VERBS as readonly string[]).includes(verb)) checkForwardTarget(str('target')!, Object.keys(config.forward?.targets ?? {}), config.dataDir!)
        // `--all` goes to the command with the seqs: `purge` deletes every dead letter only when asked to.
        if (values.all === true) args.rest = [...rest, PURGE_ALL]
      }
      if (str('target') !== undefined) args.target = str('target')
      break
    }
    case 'demo': {
      if (rest.length > 0) throw bad(`outpost ${command} takes no arguments (got "${rest[0]}")`)
      const port = either('port', 'OUTPOST_MQTT_PORT')
      if (port !== undefined) args.port = portOf(...port)
      if (str('host') !== undefined) args.host = hostOf(str('host')!, '--host')
      if (str('duration') !== undefined) args.durationS = secondsOf(str('duration')!, '--duration', 'positive')
      if (str('outage-after') !== undefined) args.outageAfterS = secondsOf(str('outage-after')!, '--outage-after', 'zero')
      if (str('outage') !== undefined) args.outageS = secondsOf(str('outage')!, '--outage', 'zero')
      const sampleMs = envOf(env, 'OUTPOST_SAMPLE_MS')
      if (sampleMs !== undefined) args.sampleMs = parseSampleMs(sampleMs, 'OUTPOST_SAMPLE_MS')
      args.dataDir = dataDirOf(envOf(env, 'OUTPOST_DATA_DIR') ?? '.outpost', 'OUTPOST_DATA_DIR')
      readStoreOptions(env) // OUTPOST_STORE_WAIT_MS, read by the devices it starts: checked here, before they start
      break
    }
    case 'device': {
      if (rest.length > 1) throw bad(`outpost device takes one device name (got "${rest.join(' ')}")`)
      args.device = deviceOf(rest[0], devices)
      const url = either('url', 'OUTPOST_MQTT_URL')
      if (url !== undefined) args.url = urlOf(...url)
      const id = either('id', 'OUTPOST_DEVICE_ID')
      if (id !== undefined) args.id = idOf(...id)
      args.dataDir = dataDirOf(envOf(env, 'OUTPOST_DATA_DIR') ?? '.outpost', 'OUTPOST_DATA_DIR')
      readStoreOptions(env) // OUTPOST_STORE_WAIT_MS: the device reads it too; checked here with the other variables
      break
    }
    case 'build':
      args.build = parseBuildArgs(bundleContext())
      break
    case 'keys':
      args.keys = parseKeysArgs(bundleContext())
      break
    case 'flash':
      args.flash = parseFlashArgs(bundleContext())
      break
    case 'jobs': {
      args.db = str('db')
      args.json = values.json === true
      const limit = str('limit')
      if (limit !== undefined && !/^[1-9]\d{0,8}$/.test(limit)) throw bad(`--limit "${limit}" is not accepted; expected a whole number from 1 to 999999999`)
      args.limit = limit
      break
    }
    default:
      break
  }
  return args
}
