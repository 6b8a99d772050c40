// The arguments of the bundle commands, `outpost build`, `outpost keys` and `outpost flash`,
// checked as the rest of the command line is (cli-args.ts): one BAD_ARGUMENT line per mistake.
import { existsSync, statSync } from 'node:fs'
import path from 'node:path'
import { ErrorCode, OutpostError } from '../runtime/errors.js'
import { redactUrl } from '../runtime/redact-url.js'
import { closeTo } from './close-to.js'

const bad = (message: string): OutpostError => new OutpostError(ErrorCode.BAD_ARGUMENT, message)

/** What the parsers read from the command line (cli-args.ts hands it in). */
export interface BundleArgsContext {
  /** The words after the command. */
  rest: string[]
  /** An option's value. */
  str(name: string): string | undefined
  /** Whether a boolean option was given. */
  flag(name: string): boolean
  /** The option's value, else the variable's, with where it came from. */
  either(name: string, variable: string): [string, string] | undefined
  /** A device name (a folder under devices/). @throws BAD_ARGUMENT */
  deviceOf(name: string): string
  idOf(value: string, where: string): string
  secondsOf(value: string, where: string, min: 'positive' | 'zero'): number
}

/** `outpost build [device...] …`. */
export interface BuildArgs {
  /** Device names (folders under devices/); empty: every device. */
  devices: string[]
  /** --out: where the bundle directories go. */
  outDir?: string
  /** --key, else OUTPOST_SIGNING_KEY (a PEM file, or PEM text), and which of them it came from. */
  key?: { value: string; where: string }
  unsigned: boolean
  /** --budget-kb and --gzip-budget-kb, KB. */
  budget: { minifiedKb?: number; gzipKb?: number }
  /** --build-time as given (read by the build: ISO 8601 or seconds); SOURCE_DATE_EPOCH is read there too. */
  buildTime?: string
  /** --addon, --platform, --arch. */
  addon: { file?: string; platform?: string; arch?: string }
}

/** `outpost keys generate [--out DIR] [--force]`. */
export interface KeysArgs {
  verb: 'generate'
  outDir?: string
  force: boolean
}

/**
 * `outpost flash <bundle-dir> --to <path> [--key FILE]` and `outpost flash status --to <path> [--json]`;
 * over the air, `--device <id> --gateway <url>` instead of `--to`.
 */
export interface FlashArgs {
  verb: 'flash' | 'status'
  /** For `flash`: the bundle directory (it exists and has a manifest.json). */
  bundle?: string
  /** The device's filesystem (an existing folder); empty when over the air. */
  to: string
  /** --key: a public key file to trust (read by bin/flash-cmd.ts). */
  key?: string
  json: boolean
  /** --change-device: a bundle of another device than the one there may replace it. */
  changeDevice: boolean
  /** Over the air, through the gateway's HTTP command API. */
  ota?: OtaArgs
}

/** `--device <id> --gateway <url> [--token T] [--chunk-kb N] [--wait S]`. */
export interface OtaArgs {
  device: string
  /** The gateway's HTTP URL (http: or https:). */
  gateway: string
  /** --token, else OUTPOST_HTTP_TOKEN. */
  token?: string
  /** --chunk-kb, KiB per chunk. */
  chunkKb?: number
  /** --wait, seconds to wait for the new bundle's outcome. */
  waitS?: number
}

/** Largest --chunk-kb: a chunk in base64 fits a command payload (runtime/ota/contract.ts, MAX_CHUNK_BYTES). */
const MAX_CHUNK_KB = 176

/** Targets an addon can be given for (as process.platform and process.arch name them). */
const PLATFORMS = ['linux', 'darwin', 'win32', 'freebsd']
const ARCHES = ['x64', 'arm64', 'arm', 'ia32', 'riscv64', 'ppc64', 's390x']

/** A size budget in KB: a number above 0. */
function kbOf(value: string, where: string): number {
  const n = /^\d{1,6}(\.\d+)?$/.test(value) ? Number(value) : NaN
  if (!(n > 0)) throw bad(`${where} "${value}" is not accepted; expected a size in KB above 0 (e.g. 300)`)
  return n
}

/** `outpost build [device...] [--out DIR] [--key K | --unsigned] [--budget-kb N] …`. @throws BAD_ARGUMENT */
export function parseBuildArgs(c: BundleArgsContext): BuildArgs {
  const { rest, str, either } = c
  const names = rest.length === 0 ? [] : rest.map((n) => c.deviceOf(n))
  const key = either('key', 'OUTPOST_SIGNING_KEY')
  const unsigned = c.flag('unsigned')
  if (unsigned && str('key') !== undefined) throw bad('outpost build takes --key or --unsigned, not both')
  const budgetKb = str('budget-kb')
  const gzipKb = str('gzip-budget-kb')
  const platform = str('platform')
  const arch = str('arch')
  if (platform !== undefined && !PLATFORMS.includes(platform)) throw bad(`--platform "${platform}" is not accepted; expected one of ${PLATFORMS.join(', ')}`)
  if (arch !== undefined && !ARCHES.includes(arch)) throw bad(`--arch "${arch}" is not accepted; expected one of ${ARCHES.join(', ')}`)
  return {
    devices: [...new Set(names)],
    outDir: str('out'),
    // --unsigned is asked for outright: a key in the environment does not sign it after all.
    key: unsigned || key === undefined ? undefined : { value: key[0], where: key[1] },
    unsigned,
    budget: { minifiedKb: budgetKb === undefined ? undefined : kbOf(budgetKb, '--budget-kb'), gzipKb: gzipKb === undefined ? undefined : kbOf(gzipKb, '--gzip-budget-kb') },
    buildTime: str('build-time'),
    addon: { file: str('addon'), platform, arch },
  }
}

/** `outpost keys generate [--out DIR] [--force]`. @throws BAD_ARGUMENT */
export function parseKeysArgs(c: BundleArgsContext): KeysArgs {
  const { rest, str } = c
  const verb = rest[0]
  if (verb === undefined) throw bad('outpost keys needs a command; expected generate')
  if (verb !== 'generate') throw bad(`outpost keys: unknown command "${verb}"; expected generate`)
  if (rest.length > 1) throw bad(`outpost keys generate takes no arguments (got "${rest[1]}"); the folder is --out DIR`)
  return { verb, outDir: str('out'), force: c.flag('force') }
}

/** `outpost flash …` and `outpost flash status …`, to a folder or over the air. @throws BAD_ARGUMENT */
export function parseFlashArgs(c: BundleArgsContext): FlashArgs {
  const { rest, str, either } = c
  const status = rest[0] === 'status'
  const usage = 'outpost flash <bundle-dir> --to <path> [--key <public.pem>], outpost flash <bundle-dir> --device <id> --gateway <url>, or outpost flash status (--to <path> | --device <id> --gateway <url>)'
  if (rest.length === 0) throw bad(`outpost flash needs a bundle directory (outpost build makes them, in dist/bundles/<device>); ${usage}`)
  if (rest.length > 1) throw bad(`outpost flash ${status ? 'status takes no arguments' : 'takes one bundle directory'} (got "${rest.slice(1).join(' ')}"); ${usage}`)
  const to = str('to')
  const device = str('device')
  const air = ['gateway', 'token', 'chunk-kb', 'wait'].find((o) => str(o) !== undefined)
  if (to !== undefined && (device !== undefined || air !== undefined)) throw bad(`--to flashes a device's filesystem, --device over the air through a gateway: give one of them (got --to and --${device !== undefined ? 'device' : air})`)
  let ota: OtaArgs | undefined
  if (device !== undefined || air !== undefined) {
    if (device === undefined || device === '') throw bad(`--${air} is for flashing over the air: give --device <id> --gateway <url> too`)
    const gateway = str('gateway')
    if (gateway === undefined) throw bad(`outpost flash${status ? ' status' : ''} --device needs --gateway <url>: the gateway's HTTP face (e.g. http://gateway:8080)`)
    let url: URL | undefined
    try {
      url = new URL(gateway)
    } catch {
      url = undefined
    }
    if (url === undefined || !['http:', 'https:'].includes(url.protocol) || url.hostname === '') throw bad(`--gateway "${redactUrl(gateway)}" is not the gateway's HTTP URL; expected http://host:port (its HTTP face, http.port in its config)`)
    if (str('key') !== undefined) throw bad('--key is for --to: over the air, the device verifies bundles with the keys it was provisioned with')
    const kb = str('chunk-kb')
    if (kb !== undefined && (!/^\d{1,3}$/.test(kb) || Number(kb) < 1 || Number(kb) > MAX_CHUNK_KB)) throw bad(`--chunk-kb "${kb}" is not accepted; expected a whole number of KB from 1 to ${MAX_CHUNK_KB}`)
    if (status && (kb !== undefined || str('wait') !== undefined)) throw bad(`--${kb !== undefined ? 'chunk-kb' : 'wait'} is an option of outpost flash, not of outpost flash status`)
    const wait = str('wait')
    const token = either('token', 'OUTPOST_HTTP_TOKEN')?.[0]
    ota = { device: c.idOf(device, '--device'), gateway, token, chunkKb: kb === undefined ? undefined : Number(kb), waitS: wait === undefined ? undefined : c.secondsOf(wait, '--wait', 'positive') }
  } else {
    if (to === undefined || to === '') throw bad(`outpost flash${status ? ' status' : ''} needs --to <path>: the device's filesystem (an SD card mount or a rootfs folder); or --device <id> --gateway <url> over the air`)
    if (!existsSync(to)) throw bad(`--to ${to} does not exist; expected the device's filesystem (an SD card mount or a rootfs folder; it is not created)`)
    if (!statSync(to).isDirectory()) throw bad(`--to ${to} is a file; expected the device's filesystem (a folder)`)
    if (status && str('key') !== undefined) throw bad('--key is an option of outpost flash, not of outpost flash status')
  }
  if (!status && c.flag('json')) throw bad('--json is an option of outpost flash status only')
  const changeDevice = c.flag('change-device')
  if (status && changeDevice) throw bad('--change-device is an option of outpost flash, not of outpost flash status')
  const bundle = status ? undefined : rest[0]!
  if (bundle !== undefined) {
    if (!existsSync(bundle)) throw bad(`bundle directory ${bundle} does not exist (${closeTo(bundle, ['status']) === undefined ? '' : 'did you mean outpost flash status? '}outpost build makes them, in dist/bundles/<device>)`)
    if (!statSync(bundle).isDirectory()) throw bad(`${bundle} is a file; expected a bundle directory (outpost build makes them, in dist/bundles/<device>)`)
    if (!existsSync(path.join(bundle, 'manifest.json'))) throw bad(`${bundle} is not a bundle directory (no manifest.json); outpost build makes them, in dist/bundles/<device>`)
  }
  return { verb: status ? 'status' : 'flash', bundle, to: to ?? '', key: str('key'), json: c.flag('json'), changeDevice, ota }
}
