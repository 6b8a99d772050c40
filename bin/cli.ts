import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import type { Logger } from 'pino'
import { isIP } from 'node:net'
import { formatConfig } from '../gateway/config/load-config.js'
import { startGateway } from '../gateway/index.js'
import { ErrorCode, errorMessage, isOutpostError } from '../runtime/errors.js'
import { redactUrl } from '../runtime/redact-url.js'
import { createLogger, stdoutLines, type LogFormat } from '../runtime/logger.js'
import { parseCliArgs, type CliArgs } from './cli-args.js'
import { DEVICES_HELP, runDevicesCommand } from './devices.js'
import { JOBS_HELP, runJobsCommand } from './jobs.js'
import { FORWARD_HELP, runForwardCommand } from './forward.js'
import { BUILD_HELP, loadBuildModule, runBuildCommand } from './build-cmd.js'
import { KEYS_HELP, runKeysCommand } from './keys-cmd.js'
import { FLASH_HELP, runFlashCommand } from './flash-cmd.js'

/**
 * The folder with this code's bin/, devices/ and runtime/: dist/ when the CLI runs compiled (as
 * bin/outpost.js runs it), the checkout when run from its source.
 */
const CODE_ROOT = fileURLToPath(new URL('..', import.meta.url))
/** The package's folder (package.json): the one above dist/. */
const PACKAGE_ROOT = existsSync(path.join(CODE_ROOT, 'package.json')) ? CODE_ROOT : path.dirname(CODE_ROOT)
/** A device's entry point, `devices/<name>/` + this, compiled like the CLI itself. */
const DEVICE_MAIN = `main${path.extname(fileURLToPath(import.meta.url))}`
/** Where device `name`'s entry point is. */
const deviceMain = (name: string): string => path.join(CODE_ROOT, 'devices', name, DEVICE_MAIN)

const HELP = `outpost — message-driven services for edge devices

Usage:
  outpost demo [--port N] [--duration S] [--outage-after S] [--outage S]
                                            gateway with embedded broker + two demo devices (thermo, display);
                                            after 10 s the broker stops for 6 s and comes back (--outage 0: never)
  outpost gateway [--config FILE] [--print-config] [--port N] [--host H]
                                            run the gateway (embedded aedes broker; default port 1883);
                                            with a config file: devices must log in, broker state kept
  outpost devices <add|list|revoke|rotate> [id] [--role R] [--json] [--config FILE]
                                            manage the devices allowed to log in to the gateway
                                            (\`outpost devices --help\` for details)
  outpost device <name> [--url URL] [--id ID]
                                            run a device of this project (thermo, display) against a broker
  outpost forward <status|dead|redrive|purge> [seq…|--all] [--target T] [--config FILE]
                                            the gateway's forward queue to cloud targets and its dead letters
                                            (purge needs seqs or --all; \`outpost forward --help\` for details)
  outpost jobs <command> --db FILE          operate the durable queues in a device database
                                            (queues, status, dead, redrive, purge, pause, resume, cancel;
                                            \`outpost jobs --help\` for details)
  outpost build [device...] [--out DIR] [--key FILE | --unsigned] [--budget-kb N] [--build-time T]
                                            bundle devices into signed single-file bundles (default: all,
                                            into dist/bundles; \`outpost build --help\` for details)
  outpost keys generate [--out DIR] [--force]
                                            the Ed25519 key pair that signs bundles (default .outpost/keys)
  outpost flash <bundle-dir> --to <path> [--key <public.pem>]
                                            install a bundle onto a device's filesystem (A/B slots; the
                                            device runs node <path>/launcher.mjs, which rolls back a bundle
                                            that never gets ready)
  outpost flash <bundle-dir> --device <id> --gateway <url> [--token T]
                                            the same over the air, through the gateway's HTTP face
                                            (\`outpost flash --help\` for details)
  outpost flash status (--to <path> | --device <id> --gateway <url>) [--json]
                                            the device's active and previous slot and the last outcome
  outpost --help, outpost <command> --help  this text; with a command that has its own (devices, forward,
                                            jobs, build, keys, flash), that command's
  outpost --version                         the version

Options:
  --port N       MQTT port, 0 to 65535 (demo: 0 = a free port, the default; gateway: 1883)
  --host H       interface to bind (default 127.0.0.1)
  --config FILE  the gateway's config file, .yaml, .yml or .json (or OUTPOST_GATEWAY_CONFIG);
                 see docs/gateway.md, "Running the gateway"
  --print-config print the gateway's effective configuration (file, variables, options; the HTTP
                 token redacted) and exit
  --role R       for devices add: the role to give (default device; roles come from the config)
  --json         for jobs and devices: JSON output
  --duration S   stop the demo after S seconds (default: run until Ctrl-C)
  --outage-after S, --outage S
                 when the demo's broker goes away, and for how long (default 10 and 6; 0: no outage)
  --url URL      broker for a device, mqtt://host:port or mqtts://host:port
                 (default mqtt://127.0.0.1:1883, or OUTPOST_MQTT_URL); user:password@ in it is used
                 to log in and never logged
  --id ID        device id: letters, digits, '.', '_', '-'; not gateway (or OUTPOST_DEVICE_ID)
  --log-level L  fatal, error, warn, info (default), debug, trace or silent (or OUTPOST_LOG_LEVEL)
  --log-format F pretty (readable lines; the default on a terminal) or json (one JSON object a line;
                 the default when the output is piped) (or OUTPOST_LOG_FORMAT)

Environment: OUTPOST_MQTT_PORT, OUTPOST_MQTT_URL, OUTPOST_DEVICE_ID, OUTPOST_DATA_DIR (device databases,
default .outpost; the gateway's data goes to its gateway/ folder), OUTPOST_LOG_LEVEL, OUTPOST_LOG_FORMAT,
OUTPOST_SAMPLE_MS (the thermo's sampling interval, a whole number of ms from 1 to 2147483647; default 2000)
Gateway, over its config file: OUTPOST_GATEWAY_CONFIG, OUTPOST_MQTT_HOST, OUTPOST_GATEWAY_DATA_DIR,
OUTPOST_HTTP_PORT, OUTPOST_HTTP_HOST, OUTPOST_HTTP_TOKEN, OUTPOST_AUTH (on or off)
A wrong argument, option, variable or config file stops the CLI with one line naming it and exit code 2.
`

/** Prints one line for an error and exits: 2 for a bad argument or configuration, 1 for anything else. */
function fail(err: unknown): never {
  // A message may quote a broker URL (a refused argument, a library's error): never with its password.
  const oneLine = (s: string): string => redactUrl(s.replace(/\s*\n\s*/g, ' '))
  if (isOutpostError(err)) console.error(`outpost: ${err.code}: ${oneLine(err.message)}`)
  else console.error(`outpost: ${oneLine(errorMessage(err))}`)
  process.exit(isOutpostError(err, ErrorCode.BAD_ARGUMENT) || isOutpostError(err, ErrorCode.INVALID_CONFIG) ? 2 : 1)
}

/** The format this run's logs take: as asked, else readable on a terminal and JSON when piped. */
const formatOf = (args: CliArgs): LogFormat => args.logFormat ?? (process.stdout.isTTY === true ? 'pretty' : 'json')

type BuildModule = Awaited<ReturnType<typeof loadBuildModule>>
/** The build code, once deviceEntry loaded it. */
let bundler: BuildModule | undefined

/**
 * What device `name` runs: its bundle, dist/bundles/<name>/<name>.cjs, as a device would run it,
 * built first when it is not current (build/run-bundle.ts; signed when OUTPOST_SIGNING_KEY names a
 * key). Where the sources or esbuild are not there to build it (an installed copy of outpost),
 * its compiled main.js, and `note` says so.
 */
async function deviceEntry(name: string, note: (line: string) => void): Promise<string> {
  if (!existsSync(path.join(PACKAGE_ROOT, 'devices', name, 'main.ts'))) return deviceMain(name)
  let b: BuildModule
  try {
    b = bundler = await loadBuildModule()
  } catch (err) {
    note(`running ${name} from its compiled sources, not as a bundle: ${errorMessage(err)}`)
    return deviceMain(name)
  }
  const key = process.env.OUTPOST_SIGNING_KEY
  const signingKey = key === undefined || key === '' ? undefined : b.loadSigningKey(key, 'OUTPOST_SIGNING_KEY')
  return (await b.ensureRunnableBundle(name, { root: PACKAGE_ROOT, signingKey, onNote: note })).entry
}

/** Ends the bundler's helper process, if a build started one (it would outlive the build). */
async function stopBundler(): Promise<void> {
  if (bundler !== undefined) await bundler.stopBundler()
}

/**
 * Where a bundle the CLI runs keeps its code cache, as a launched device does (NODE_COMPILE_CACHE,
 * runtime/launcher/bundle-runner.ts): beside the bundle folders (a bundle folder holds only what
 * its manifest lists), one folder per device; none for compiled sources or when the variable is set.
 */
function codeCacheOf(name: string, entry: string): { NODE_COMPILE_CACHE?: string } {
  if (process.env.NODE_COMPILE_CACHE !== undefined || !existsSync(path.join(path.dirname(entry), 'manifest.json'))) return {}
  return { NODE_COMPILE_CACHE: path.join(path.dirname(path.dirname(entry)), '.compile-cache', name) }
}

/** True for a line that is one JSON object (a log line to pass on as it is). */
function isJsonObject(line: string): boolean {
  if (!line.startsWith('{')) return false
  try {
    const v: unknown = JSON.parse(line)
    return typeof v === 'object' && v !== null && !Array.isArray(v)
  } catch {
    return false
  }
}

/**
 * Starts a device's bundle (or compiled main.js) in a process of its own, its logs as JSON lines
 * that `print` writes out (in this process's format); what else it writes, as JSON lines too. The IPC channel is how the device learns that this process has
 * gone, even by SIGKILL: it then stops too (devices/device-config.ts, stopOnSignals).
 */
function spawnDevice(name: string, entry: string, env: Record<string, string>, print: (jsonLine: string) => void): ChildProcess {
  const cache = codeCacheOf(name, entry)
  const child = spawn(process.execPath, [entry], {
    cwd: PACKAGE_ROOT,
    env: { ...process.env, ...cache, ...env, OUTPOST_LOG_FORMAT: 'json' },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  })
  const device = env.OUTPOST_DEVICE_ID ?? name
  const relay = (fromStderr: boolean): ((chunk: string) => void) => {
    let buf = ''
    const pass = (line: string): void => {
      if (line.trim() === '') return
      if (isJsonObject(line)) print(line)
      // Not a log line (a warning from Node, a crash, anything else): shown as text (escaped
      // on a terminal), and kept one JSON object a line.
      else print(JSON.stringify({ level: fromStderr ? 50 : 30, time: Date.now(), device, msg: line }))
    }
    return (chunk: string): void => {
      // Only the new text is searched for line ends: what was kept has none.
      let nl = buf.length
      buf += chunk
      while ((nl = buf.indexOf('\n', nl)) >= 0) {
        pass(buf.slice(0, nl))
        buf = buf.slice(nl + 1)
        nl = 0
      }
      // A device writing without line ends does not fill the demo's memory: past 1 MiB of text,
      // what it wrote is shown as a line of its own.
      if (buf.length > 1 << 20) {
        pass(buf)
        buf = ''
      }
    }
  }
  // Decoded as UTF-8 across chunks: a character split between two chunks stays whole.
  child.stdout!.setEncoding('utf8').on('data', relay(false))
  child.stderr!.setEncoding('utf8').on('data', relay(true))
  return child
}

async function demo(args: CliArgs): Promise<void> {
  const format = formatOf(args)
  // The demo's lines, the gateway's and the devices' share one writer of standard output.
  const logOpts = { level: args.logLevel, format }
  const log = createLogger({ name: 'demo', ...logOpts })
  const write = stdoutLines(format)
  const print = (jsonLine: string): void => write(`${jsonLine}\n`)
  // The devices run their bundles, as they would on a device (built first when the sources changed).
  const note = (line: string): void => log.info(line)
  const [display, thermo] = await Promise.all([deviceEntry('display', note), deviceEntry('thermo', note)]).catch(fail)
  await stopBundler()
  const gateway = await startGateway({ port: args.port ?? 0, host: args.host, logger: createLogger({ name: 'gateway', ...logOpts }) }).catch(fail)
  log.info({ url: gateway.broker.url }, `broker at ${gateway.broker.url}; starting devices thermo-1 and display-1 (Ctrl-C stops)`)
  const env: Record<string, string> = {
    OUTPOST_MQTT_URL: gateway.broker.url,
    OUTPOST_SAMPLE_MS: String(args.sampleMs ?? 2_000),
    OUTPOST_DATA_DIR: args.dataDir!,
    OUTPOST_LOG_LEVEL: args.logLevel ?? 'info',
  }
  let stopping = false
  // A device that stops by itself (its database held by another process, a crash) ends the demo,
  // whose point is the two of them: it went on with one, and exited 0 at Ctrl-C.
  const start = (name: string, entry: string, id: string): ChildProcess => {
    const child = spawnDevice(name, entry, { ...env, OUTPOST_DEVICE_ID: id }, print)
    child.on('exit', (code, signal) => {
      if (stopping) return
      log.error({ code, signal }, `device ${id} stopped by itself (its last lines above say why); stopping the demo`)
      void stop(1)
    })
    return child
  }
  const children = [start('display', display, 'display-1'), start('thermo', thermo, 'thermo-1')]
  const stop = async (exitCode = 0): Promise<void> => {
    if (stopping) return
    stopping = true
    log.info('stopping devices')
    await Promise.all(children.map((c) => new Promise<void>((r) => {
      if (c.exitCode !== null || c.signalCode !== null) return r()
      c.once('exit', () => r())
      c.kill('SIGTERM')
    })))
    await gateway.close()
    log.info('stopped')
    process.exit(exitCode)
  }
  process.on('SIGINT', () => void stop())
  process.on('SIGTERM', () => void stop())
  if (args.durationS !== undefined) setTimeout(() => void stop(), args.durationS * 1_000)
  // The offline promise, shown: the broker goes away for a while and comes back with its state.
  const outageMs = (args.outageS ?? 6) * 1_000
  if (outageMs > 0) {
    setTimeout(() => {
      if (stopping) return
      log.info(`stopping the broker for ${outageMs / 1_000} s; the devices keep sampling, and what they produce waits in their outboxes`)
      void gateway.interrupt(outageMs).then(
        () => {
          if (!stopping) log.info('broker back; the backlog drains in order (results arrive late, once each)')
        },
        // interrupt does not reject; should it ever, the demo says so and goes on.
        (err: unknown) => log.error({ err }, 'the broker did not come back'),
      )
    }, (args.outageAfterS ?? 10) * 1_000).unref()
  }
}

async function gateway(args: CliArgs): Promise<void> {
  const config = args.gatewayConfig!
  if (args.printConfig === true) {
    process.stdout.write(formatConfig(config))
    return
  }
  const format = config.log.format ?? formatOf(args)
  const logger: Logger = createLogger({ name: 'gateway', level: config.log.level, format })
  const gw = await startGateway({ config, logger }).catch(fail)
  const stop = (): void => void gw.close().then(() => process.exit(0))
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
}

/**
 * Runs a device in this process, so that nothing outlives the CLI: its bundle (see deviceEntry)
 * reads the same OUTPOST_* variables it would read on its own, set here from the options.
 */
async function device(args: CliArgs): Promise<void> {
  const env = process.env
  if (args.url !== undefined) env.OUTPOST_MQTT_URL = args.url
  if (args.id !== undefined) env.OUTPOST_DEVICE_ID = args.id
  if (args.logLevel !== undefined) env.OUTPOST_LOG_LEVEL = args.logLevel
  env.OUTPOST_LOG_FORMAT = formatOf(args)
  env.OUTPOST_DATA_DIR = args.dataDir!
  const note = (line: string): void => void process.stderr.write(`outpost: ${line}\n`)
  const entry = await deviceEntry(args.device!, note).catch(fail)
  await stopBundler()
  Object.assign(env, codeCacheOf(args.device!, entry))
  await import(pathToFileURL(entry).href).catch(fail)
}

async function devices(args: CliArgs): Promise<void> {
  const { mqtt, dataDir } = args.gatewayConfig!
  // The address devices are told to connect to: an IPv6 one goes in brackets.
  const host = isIP(mqtt.host) === 6 ? `[${mqtt.host}]` : mqtt.host
  try {
    console.log(await runDevicesCommand(args.rest, { dataDir: dataDir!, role: args.role, json: args.json, mqttUrl: `mqtt://${host}:${mqtt.port}`, roles: Object.keys(args.gatewayConfig!.auth.roles) }))
  } catch (err) {
    // A wrong call: what was wrong on stderr, how to call it on stdout (as for jobs).
    if (isOutpostError(err, ErrorCode.BAD_ARGUMENT)) console.log(DEVICES_HELP)
    fail(err)
  }
}

function forward(args: CliArgs): void {
  try {
    console.log(runForwardCommand(args.rest, { dataDir: args.gatewayConfig!.dataDir!, target: args.target, limit: args.limit, json: args.json }))
  } catch (err) {
    if (isOutpostError(err, ErrorCode.BAD_ARGUMENT)) console.log(FORWARD_HELP)
    fail(err)
  }
}

async function build(args: CliArgs): Promise<void> {
  const code = await runBuildCommand(args.build!).catch(fail)
  process.exit(code)
}

async function flash(args: CliArgs): Promise<void> {
  console.log(await runFlashCommand(args.flash!).catch(fail))
}

async function keys(args: CliArgs): Promise<void> {
  console.log(await runKeysCommand(args.keys!).catch(fail))
}

function jobs(args: CliArgs): void {
  try {
    console.log(runJobsCommand(args.rest, { db: args.db, limit: args.limit, json: args.json }))
  } catch (err) {
    // A wrong call: what was wrong on stderr, how to call it on stdout.
    if (isOutpostError(err, ErrorCode.BAD_ARGUMENT)) console.log(JOBS_HELP)
    fail(err)
  }
}

let args: CliArgs
try {
  args = parseCliArgs(process.argv.slice(2), process.env, { dir: path.join(CODE_ROOT, 'devices'), main: DEVICE_MAIN })
} catch (err) {
  fail(err)
}
if (args.version) {
  console.log((JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version)
} else if (args.help || args.command === undefined || args.command === 'help') {
  const helps: Partial<Record<string, string>> = { jobs: JOBS_HELP, devices: DEVICES_HELP, forward: FORWARD_HELP, build: BUILD_HELP, keys: KEYS_HELP, flash: FLASH_HELP }
  console.log(helps[args.command ?? ''] ?? HELP)
} else if (args.command === 'demo') {
  await demo(args)
} else if (args.command === 'gateway') {
  await gateway(args)
} else if (args.command === 'device') {
  await device(args)
} else if (args.command === 'devices') {
  await devices(args)
} else if (args.command === 'forward') {
  forward(args)
} else if (args.command === 'build') {
  await build(args)
} else if (args.command === 'keys') {
  await keys(args)
} else if (args.command === 'flash') {
  await flash(args)
} else {
  jobs(args)
}
