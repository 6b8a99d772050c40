// `outpost flash <bundle-dir> --to <path>`: installs a built bundle onto a device's filesystem (an
// SD card mount, a rootfs directory) in A/B slots. Nothing on the device changes until the bundle
// verifies against the device's trusted keys and its Node; then it is copied into the slot that
// is not active, flushed, verified again where it lies, and the boot pointer is switched by one
// rename. Killed at any moment, the device starts the old bundle or the new one (docs/build.md, "Flash").
import { createPublicKey, type KeyObject } from 'node:crypto'
import { accessSync, constants, existsSync, lstatSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { mkdir, open, readFile, rm, stat, statfs } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { ErrorCode, errorMessage, isOutpostError, OutpostError } from '../runtime/errors.js'
import {
  DEVICE_FILE, KEYS_DIR, loadPointer, MAX_MANIFEST_BYTES, otherSlot, POINTER_FILE, readRegularFile, readState, readTrustedKeys, SLOTS_DIR, slotDir, syncDir, writeFileAtomic,
  type BootPointer, type LaunchOutcome, type SlotName,
} from '../runtime/launcher/launcher.js'
import { chooseInactiveSlot, FLASH_LOCK, placeSlot, switchToSlot, takeFlashLock } from '../runtime/ota/install.js'
import { MANIFEST_FILE, SIGNATURE_FILE, type Manifest } from './manifest.js'
import { keyIdOf, type KeyInput } from './signing.js'
import { verifyBundle, type VerifyTarget } from './verify.js'

export { DATA_DIR, DEVICE_FILE, KEYS_DIR, POINTER_FILE, SLOTS_DIR, STATE_FILE, readPointer, readState, slotDir, type BootPointer, type LaunchOutcome, type SlotName } from '../runtime/launcher/launcher.js'

/** The launcher's file name on the device. */
export const LAUNCHER_FILE = 'launcher.mjs'

/** How to flash. */
export interface FlashOptions {
  /** The device's filesystem: an existing folder. */
  to: string
  /** A public key to trust: the bundle may be signed by it, and it is added to the device's keys/ once the bundle is flashed. */
  key?: KeyInput
  /** Called before each step (verify, prepare, copy <file>, sync, replace, verify-slot, keys, launcher, switch, switched). */
  onStep?: (step: string) => void
  /** Pause after announcing each step, ms: for testing interrupted flashing (OUTPOST_FLASH_STEP_DELAY_MS). */
  stepDelayMs?: number
  /** Flash a bundle of another device than the one the folder runs (a thermo made a display): refused without. */
  changeDevice?: boolean
}

/** What was flashed. */
export interface FlashResult {
  /** The slot the bundle went into, now active. */
  slot: SlotName
  /** The slot kept for rollback, or null on a device flashed for the first time. */
  previous: SlotName | null
  manifest: Manifest
  /** The key it was signed with. */
  keyId: string
  /** The id of the key --key added to the device, when it was not trusted there yet. */
  addedKey?: string
  /** The Node the bundle was checked against and where that came from. */
  target: Required<VerifyTarget> & { from: 'device.json' | 'this machine' }
  /** Why the device's active.json was damaged: it was replaced, its bytes kept as active.json.damaged. */
  damaged?: string
}

const bad = (message: string): OutpostError => new OutpostError(ErrorCode.BAD_ARGUMENT, message)

/** The device's folder, checked: it must exist (a missing mount point is not made on the laptop's disk). */
function deviceRoot(to: string): string {
  const root = path.resolve(to)
  if (!existsSync(root)) throw bad(`--to ${to} does not exist; expected the device's filesystem (an SD card mount or a rootfs folder)`)
  if (!statSync(root).isDirectory()) throw bad(`--to ${to} is a file; expected the device's filesystem (a folder)`)
  return root
}

/** The Node the device runs: as its launcher recorded it in device.json, else this machine's. */
export function deviceTarget(root: string): FlashResult['target'] {
  const file = path.join(root, DEVICE_FILE)
  if (existsSync(file)) {
    try {
      const d = JSON.parse(readFileSync(file, 'utf8')) as { node?: { version?: unknown; abi?: unknown }; platform?: unknown; arch?: unknown }
      if (typeof d.node?.version === 'string' && typeof d.node.abi === 'number' && typeof d.platform === 'string' && typeof d.arch === 'string') {
        return { nodeVersion: d.node.version, nodeAbi: d.node.abi, platform: d.platform, arch: d.arch, from: 'device.json' }
      }
    } catch {
      // Not readable: as if there were none.
    }
  }
  return { nodeVersion: process.versions.node, nodeAbi: Number(process.versions.modules), platform: process.platform, arch: process.arch, from: 'this machine' }
}

/**
 * The launcher as one file that imports Node's built-in modules only: beside this module when it
 * runs compiled (dist/build/ → dist/runtime/launcher/launcher.standalone.js, bin/build.js), else
 * compiled here from its TypeScript source the same way (a checkout run through tsx or vitest).
 */
export async function launcherCode(): Promise<Buffer> {
  const compiled = fileURLToPath(new URL('../runtime/launcher/launcher.standalone.js', import.meta.url))
  if (existsSync(compiled)) return readFile(compiled)
  const source = fileURLToPath(new URL('../runtime/launcher/launcher.ts', import.meta.url))
  const { build } = await import('esbuild')
  const out = await build({ entryPoints: [source], bundle: true, format: 'esm', target: 'node20', platform: 'node', write: false, logLevel: 'silent' })
  return Buffer.from(out.outputFiles[0]!.contents)
}

/** A public key from --key: a file or PEM text; a private key is refused (it stays off devices). */
export function loadTrustKey(input: KeyInput, where = '--key'): KeyObject {
  let key: KeyObject
  const text = typeof input === 'string' && !input.trimStart().startsWith('-----BEGIN') ? (existsSync(input) ? readFileSync(input) : undefined) : input
  if (text === undefined) throw bad(`${where} ${String(input)}: no such file (expected a public key, signing-key.pub.pem from outpost keys generate)`)
  if (typeof text !== 'string' && !Buffer.isBuffer(text)) key = text
  else {
    const pem = text.toString()
    if (/-----BEGIN (ENCRYPTED |RSA |EC )?PRIVATE KEY-----/.test(pem)) throw bad(`${where} is a private key; give the public one (signing-key.pub.pem): the private key never goes onto a device`)
    try {
      key = createPublicKey(pem)
    } catch (err) {
      throw bad(`${where} is not a public key in PEM form (${errorMessage(err)})`)
    }
  }
  if (key.type === 'private') throw bad(`${where} is a private key; give the public one (signing-key.pub.pem): the private key never goes onto a device`)
  if (key.asymmetricKeyType !== 'ed25519') throw bad(`${where} is a ${key.asymmetricKeyType ?? 'unknown'} key; bundles are signed with Ed25519 (outpost keys generate)`)
  return key
}

/** Copies one file: a new file, flushed before it is closed, with the source's mode. */
async function copyFlushed(from: string, to: string): Promise<void> {
  const { mode } = await stat(from)
  const bytes = await readFile(from)
  const fh = await open(to, 'wx', mode & 0o777)
  try {
    await fh.writeFile(bytes)
    await fh.sync()
  } finally {
    await fh.close()
  }
}

const osCode = (err: unknown): string => String((err as { code?: unknown } | null)?.code ?? '')
const mb = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(1)} MB`

/** Bytes a file or folder takes on its disk: what removing it frees (0 when it is not there). */
function onDisk(p: string): number {
  try {
    const st = lstatSync(p)
    return st.isDirectory() ? readdirSync(p).reduce((n, name) => n + onDisk(path.join(p, name)), st.blocks * 512) : st.blocks * 512
  } catch {
    return 0
  }
}

/**
 * Before anything is written: the device's filesystem takes writes and has room for the bundle
 * (its files, a new launcher.mjs, the pointer's and key's new files), counting what flashing
 * removes first: the inactive slot's old bundle (it is rewritten) and what an earlier flash left.
 * @throws STORE_READ_ONLY, STORE_FULL, STORE_FAILED (slots/ is not a folder), with nothing written
 */
async function checkDisk(root: string, to: string, bundleDir: string, files: string[], launcher: Buffer, what: string, active: SlotName | undefined): Promise<void> {
  try {
    accessSync(root, constants.W_OK)
  } catch (err) {
    const ro = osCode(err) === 'EROFS'
    throw new OutpostError(ErrorCode.STORE_READ_ONLY, `the device's filesystem at ${to} ${ro ? 'is read-only' : 'cannot be written'} (${errorMessage(err)})${ro ? '; mount it read-write (an SD card: its lock slid off) and flash again' : ''}; nothing was written to ${to}`)
  }
  const slots = path.join(root, SLOTS_DIR)
  if (existsSync(slots) && !statSync(slots).isDirectory()) {
    throw new OutpostError(ErrorCode.STORE_FAILED, `${path.join(to, SLOTS_DIR)} is a file, not the folder of the device's slots (a damaged card?); move it away and flash again; nothing was written to ${to}`)
  }
  const fs = await statfs(root)
  const inBlocks = (bytes: number): number => Math.ceil(bytes / fs.bsize) * fs.bsize
  let need = 4 * fs.bsize
  for (const f of files) need += inBlocks((await stat(path.join(bundleDir, f))).size)
  const launcherFile = path.join(root, LAUNCHER_FILE)
  if (!existsSync(launcherFile) || !readFileSync(launcherFile).equals(launcher)) need += inBlocks(launcher.byteLength)
  const inactive = active === undefined ? 'a' : otherSlot(active)
  const reused = onDisk(slotDir(root, inactive)) + (existsSync(slots) ? readdirSync(slots) : []).filter((n) => n.startsWith('.')).reduce((n, name) => n + onDisk(path.join(slots, name)), 0)
  const free = fs.bavail * fs.bsize
  if (need > free + reused) {
    const counting = reused > 0 ? `, counting the ${mb(reused)} of slot ${inactive}, which it replaces` : ''
    throw new OutpostError(ErrorCode.STORE_FULL, `the device's disk at ${to} is full: ${what} needs ${mb(need)} and ${mb(free + reused)} is free${counting}; free ${mb(need - free - reused)} more on it and flash again; nothing was written to ${to}`)
  }
}

/** An error writing the device, as one line that says what failed and what the device starts now. */
function writeError(err: unknown, to: string, doing: string, starts: string): unknown {
  if (isOutpostError(err)) return err
  const os = osCode(err)
  // rm reports a file it may not remove (chattr +i) as EPERM, or as ENOTDIR once it tried it as a folder.
  const stuck = doing.startsWith('removing') && (os === 'EPERM' || os === 'ENOTDIR')
  const code = os === 'ENOSPC' || os === 'EDQUOT' ? ErrorCode.STORE_FULL : stuck || os === 'EROFS' || os === 'EACCES' || os === 'EPERM' ? ErrorCode.STORE_READ_ONLY : ErrorCode.STORE_FAILED
  const why = stuck ? `: ${String((err as { path?: unknown }).path)} cannot be removed (is it immutable? lsattr shows it; or the card is damaged)` : ` (${errorMessage(err)})`
  const disk = code === ErrorCode.STORE_FULL ? `the device's disk at ${to} filled up` : code === ErrorCode.STORE_READ_ONLY ? `the device's filesystem at ${to} refused a write` : `writing the device at ${to} failed`
  return new OutpostError(code, `${disk} while ${doing}${why}; ${starts}${code === ErrorCode.STORE_FULL ? '; free room on it and flash again' : ''}`)
}

/**
 * Flashes the bundle in `bundleDir` onto the device at `opts.to`.
 * @returns the slot it went into, now active
 * @throws BAD_ARGUMENT (no such --to, a wrong --key); UNKNOWN_KEY when the device trusts no key and none is given;
 *   whatever verifyBundle refuses with (UNKNOWN_KEY, BAD_SIGNATURE, HASH_MISMATCH, ABI_MISMATCH, NOT_FOUND), with the device unchanged;
 *   STORE_FULL, STORE_READ_ONLY, STORE_FAILED when the device's disk has no room or refuses a write (before the switch: it starts the old bundle)
 */
export async function flashBundle(bundleDir: string, opts: FlashOptions): Promise<FlashResult> {
  const root = deviceRoot(opts.to)
  const step = async (name: string): Promise<void> => {
    opts.onStep?.(name)
    if (opts.stepDelayMs !== undefined && opts.stepDelayMs > 0) await new Promise((r) => setTimeout(r, opts.stepDelayMs))
  }
  const given = opts.key === undefined ? undefined : loadTrustKey(opts.key)
  const trusted = [...readTrustedKeys(root).values()]
  if (given !== undefined && !trusted.some((k) => keyIdOf(k) === keyIdOf(given))) trusted.push(given)
  if (trusted.length === 0) {
    throw new OutpostError(ErrorCode.UNKNOWN_KEY, `the device at ${opts.to} trusts no key (nothing in ${path.join(opts.to, KEYS_DIR)}/); give --key <public.pem> to provision it with the key your bundles are signed with; nothing was written`)
  }
  const target = deviceTarget(root)
  await step('verify')
  let manifest: Manifest
  try {
    manifest = await verifyBundle(bundleDir, trusted, target)
  } catch (err) {
    if (!isOutpostError(err)) throw err
    const node = target.from === 'device.json' ? ` (the device's Node, from ${DEVICE_FILE})` : ''
    throw new OutpostError(err.code, `${err.message}${err.code === ErrorCode.ABI_MISMATCH ? node : ''}; nothing was written to ${opts.to}`, { details: err.details })
  }
  const keyId = (JSON.parse(await readFile(path.join(bundleDir, SIGNATURE_FILE), 'utf8')) as { keyId: string }).keyId
  // Another device's bundle (a display's onto a thermo) is most likely a slip: said, unless asked for.
  const runs = runningDevice(root)
  if (runs !== undefined && runs !== manifest.device && opts.changeDevice !== true) {
    throw new OutpostError(ErrorCode.BAD_ARGUMENT, `the device at ${opts.to} runs the ${runs} bundle and this one is ${manifest.device}'s: give --change-device to make it a ${manifest.device}; nothing was written to ${opts.to}`)
  }

  const files = [MANIFEST_FILE, SIGNATURE_FILE, ...manifest.files.map((f) => f.path)]
  const launcher = await launcherCode()
  // A damaged active.json: the slot the launcher recovers to is the active one (chooseInactiveSlot writes it).
  const old = loadPointer(root).pointer
  await checkDisk(root, opts.to, bundleDir, files, launcher, `${manifest.device} ${manifest.version}`, old?.slot)

  await step('prepare')
  // Until the switch the device starts what it started before: a failure says so, and removes what it copied.
  const still = old === undefined ? 'the device has no bundle yet' : `the device still starts slot ${old.slot}`
  let release: () => void
  try {
    release = takeFlashLock(root)
  } catch (err) {
    throw isOutpostError(err) ? err : writeError(err, opts.to, `marking ${opts.to} as being flashed (${FLASH_LOCK})`, still)
  }
  try {
    return await install(root, bundleDir, opts, { files, launcher, still, trusted, target, given, manifest, keyId, step })
  } finally {
    release()
  }
}

/** What flashBundle found before it took the device (verified, checked for room), for install. */
interface Verified {
  files: string[]
  launcher: Buffer
  still: string
  trusted: KeyObject[]
  target: FlashResult['target']
  given: KeyObject | undefined
  manifest: Manifest
  keyId: string
  step(name: string): Promise<void>
}

/** flashBundle's writing part, under its flash lock: into the inactive slot, verified there, then the switch. */
async function install(root: string, bundleDir: string, opts: FlashOptions, v: Verified): Promise<FlashResult> {
  const { files, launcher, still, trusted, target, given, manifest, keyId, step } = v
  let doing = 'removing what an earlier flash left and preparing slots/'
  const { slot, pointer, incoming, damaged } = await chooseInactiveSlot(root).catch((err: unknown) => Promise.reject(writeError(err, opts.to, doing, still)))
  const slotPath = slotDir(root, slot)
  try {
    // The inactive slot is no longer somewhere to roll back to: its room is the new bundle's.
    doing = `removing the old bundle in slot ${slot}`
    await rm(slotPath, { recursive: true, force: true })
    doing = 'copying the bundle'
    await mkdir(incoming)
    for (const name of files) {
      await step(`copy ${name}`)
      doing = `copying ${name}`
      await copyFlushed(path.join(bundleDir, name), path.join(incoming, name))
    }
    await step('sync')
    syncDir(incoming)
    await step('replace')
    doing = `moving the bundle into slot ${slot}`
    await placeSlot(root, slot, incoming)
  } catch (err) {
    await rm(incoming, { recursive: true, force: true }).catch(() => undefined)
    throw writeError(err, opts.to, doing, doing.startsWith('removing') ? still : `what was copied is removed and ${still}`)
  }

  await step('verify-slot')
  try {
    await verifyBundle(slotPath, trusted, target)
  } catch (err) {
    if (!isOutpostError(err)) throw err
    throw new OutpostError(err.code, `slot ${slot} on ${opts.to} does not verify after copying (${err.message}); the device still starts ${pointer === undefined ? 'nothing' : `slot ${pointer.slot}`}`, { details: err.details })
  }
  const notYet = `slot ${slot} holds the new bundle, but ${still}`
  await step('keys')
  let addedKey: string | undefined
  if (given !== undefined && !readTrustedKeys(root).has(keyIdOf(given))) {
    addedKey = keyIdOf(given)
    try {
      writeFileAtomic(path.join(root, KEYS_DIR, `${addedKey}.pub.pem`), given.export({ type: 'spki', format: 'pem' }).toString())
    } catch (err) {
      throw writeError(err, opts.to, `adding key ${addedKey} to ${KEYS_DIR}/`, notYet)
    }
  }
  await step('launcher')
  const launcherFile = path.join(root, LAUNCHER_FILE)
  let next: BootPointer
  try {
    doing = `writing ${LAUNCHER_FILE}`
    if (!existsSync(launcherFile) || !readFileSync(launcherFile).equals(launcher)) writeFileAtomic(launcherFile, launcher, 0o755)
    await step('switch')
    doing = `switching ${POINTER_FILE} to slot ${slot}`
    next = switchToSlot(root, slot, pointer)
  } catch (err) {
    throw writeError(err, opts.to, doing, notYet)
  }
  await step('switched')
  return { slot, previous: next.previous, manifest, keyId, addedKey, target, damaged }
}

/** The device the folder's active slot is a bundle of (its manifest's `device`), or undefined when there is none to read. */
function runningDevice(root: string): string | undefined {
  const slot = loadPointer(root).pointer?.slot
  if (slot === undefined) return undefined
  try {
    const device = (JSON.parse(readRegularFile(path.join(slotDir(root, slot), MANIFEST_FILE), MAX_MANIFEST_BYTES).toString('utf8')) as { device?: unknown }).device
    return typeof device === 'string' ? device : undefined
  } catch {
    return undefined
  }
}

/** One slot as `outpost flash status` shows it. */
export interface SlotStatus {
  slot: SlotName
  device?: string
  version?: string
  buildTime?: string
  /** Why it would not start (what the launcher checks), or undefined when it verifies. */
  problem?: string
}

/** What `outpost flash status` shows. */
export interface DeviceStatus {
  root: string
  /** The boot pointer (for a damaged one: the pointer the launcher recovers to), or undefined when nothing was flashed. */
  pointer?: BootPointer
  /** active.json is damaged: why, why the launcher starts `pointer`'s slot, or why it starts none. */
  damaged?: { problem: string; because?: string; none?: string }
  active?: SlotStatus
  previous?: SlotStatus
  /** The launcher's last outcome (state.json). */
  last?: LaunchOutcome
  /** Ids of the trusted keys. */
  keys: string[]
  /** The Node the bundles are checked against. */
  target: FlashResult['target']
}

/** The device's slots, pointer, keys and last outcome. @throws BAD_ARGUMENT when `to` is not a folder */
export async function deviceStatus(to: string): Promise<DeviceStatus> {
  const root = deviceRoot(to)
  const keys = readTrustedKeys(root)
  const target = deviceTarget(root)
  const slotStatus = async (slot: SlotName): Promise<SlotStatus> => {
    try {
      const m = await verifyBundle(slotDir(root, slot), [...keys.values()], target)
      return { slot, device: m.device, version: m.version, buildTime: m.buildTime }
    } catch (err) {
      let m: Partial<Manifest> = {}
      try {
        m = JSON.parse(readFileSync(path.join(slotDir(root, slot), MANIFEST_FILE), 'utf8')) as Partial<Manifest>
      } catch {
        // No manifest to describe it by.
      }
      const problem = keys.size === 0 ? 'UNKNOWN_KEY: the device trusts no key' : isOutpostError(err) ? `${err.code}: ${err.message}` : errorMessage(err)
      return { slot, device: m.device, version: m.version, buildTime: m.buildTime, problem }
    }
  }
  const { pointer, damaged: problem, because, none } = loadPointer(root)
  return {
    root,
    pointer,
    damaged: problem === undefined ? undefined : { problem, because, none },
    active: pointer === undefined ? undefined : await slotStatus(pointer.slot),
    previous: pointer?.previous == null ? undefined : await slotStatus(pointer.previous),
    last: readState(root),
    keys: [...keys.keys()],
    target,
  }
}
