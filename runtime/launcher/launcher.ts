#!/usr/bin/env node
// The device launcher: `node <device>/launcher.mjs` starts the bundle in the device's active slot,
// watches it, and rolls a new bundle that never becomes ready (or crashes just after it says it
// is: a probation) back to the previous slot.
// `outpost flash` copies this file onto the device, compiled into one file with the two runtime
// modules it takes (its output's writer: runtime/log-writer.ts, runtime/output-fd.ts), so that it
// imports Node's built-in modules only and one copy serves every bundle. The layout it reads (docs/build.md, "Flash"):
//   <root>/launcher.mjs  this file          <root>/slots/a/, slots/b/  bundle directories
//   <root>/active.json   the boot pointer   <root>/keys/*.pem          trusted public keys
//   <root>/state.json    the last outcome   <root>/device.json         the Node this launcher runs on
//   <root>/data/         the device's databases (OUTPOST_DATA_DIR, unless set)
// `node launcher.mjs --check` prints the slot it would start (verified) and exits, changing nothing.
// The device it starts learns its folder and slot (OUTPOST_DEVICE_DIR, OUTPOST_DEVICE_SLOT); one that
// installed a bundle over the air (runtime/ota/) asks over the IPC channel to be restarted into it.
import { spawn } from 'node:child_process'
import type { KeyObject } from 'node:crypto'
import { closeSync, constants as fsConstants, fstatSync, fsyncSync, openSync, readdirSync, readFileSync, readSync, realpathSync, renameSync, rmSync, statfsSync, statSync, writeFileSync, writeSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { outputLines } from '../output-fd.js'

export const POINTER_FILE = 'active.json'
export const STATE_FILE = 'state.json'
export const DEVICE_FILE = 'device.json'
export const SLOTS_DIR = 'slots'
export const KEYS_DIR = 'keys'
export const DATA_DIR = 'data'
/** Node's compile cache of the bundles the launcher starts: `<slot>-<bundle>` folders under it. */
export const COMPILE_CACHE_DIR = 'compile-cache'
/** Set by the launcher for the device it starts: the device's folder, and the slot the device runs from. */
export const DEVICE_DIR_ENV = 'OUTPOST_DEVICE_DIR'
export const DEVICE_SLOT_ENV = 'OUTPOST_DEVICE_SLOT'
/** What a device sends over the IPC channel to be stopped and started again from the active slot (after it switched it: over-the-air flashing). */
export const RESTART_REQUEST = 'outpost:restart'
/** What a device sends over IPC once it is ready (besides its `ready` log line, which a quieter log level hides). */
export const READY_REPORT = 'outpost:ready'
export type SlotName = 'a' | 'b'

/** active.json: which slot starts, and where to go back to. Replaced whole, by rename, never edited in place. */
export interface BootPointer {
  format: 1
  slot: SlotName
  /** The slot a new `slot` that fails goes back to; null when there is none. */
  previous: SlotName | null
  /** True once `slot` reported ready after the switch: from then on it is restarted, never rolled back. */
  confirmed: boolean
  /** Starts of `slot` since the switch, while it is not confirmed (kept across launcher restarts and power cuts). */
  starts: number
  /** When the pointer was switched to `slot` (ISO 8601); tells one switch from the next. */
  switchedAt: string
}

/** state.json: the outcome of the last switch, as the launcher saw it. */
export interface LaunchOutcome {
  outcome: 'success' | 'rolled-back' | 'no-bootable-slot'
  at: string
  slot: SlotName | null
  device?: string
  version?: string
  buildTime?: string
  /** For rolled-back: the slot left and why. */
  from?: { slot: SlotName; device?: string; version?: string; buildTime?: string }
  reason?: string
}

/** What the launcher reads of a bundle's manifest.json (build/manifest.ts writes it). */
export interface SlotManifest {
  device: string
  version: string
  buildTime: string
  entry: string
  node: { range: string }
  addon: { file: string; nodeAbi: number; platform: string; arch: string } | null
  files: { path: string; size: number; sha256: string }[]
}

export const slotDir = (root: string, slot: SlotName): string => path.join(root, SLOTS_DIR, slot)

/** Below this much free room on the device's disk, no compile cache is kept: the room is the data's. */
export const COMPILE_CACHE_MIN_FREE = 16 * 1024 * 1024

/**
 * Where the bundle in `slot` keeps Node's compile cache (NODE_COMPILE_CACHE: Node 22.1 and later
 * keep the code they compiled for a module there and reuse it at the next start instead of
 * compiling the bundle again; Node 20 ignores the variable). One folder per slot and bundle (the
 * first 16 hex digits of its entry file's sha256), so that a bundle never meets another's cache;
 * the folders of bundles that left the slot are removed here. Outside the slot folders, which
 * hold only what their manifest lists. None (undefined) when the disk has less than
 * COMPILE_CACHE_MIN_FREE free, and the caches there are removed: a cache of ~100 KB must not take
 * the last room the device's database needs.
 */
export function compileCacheOf(root: string, slot: SlotName, manifest: Pick<SlotManifest, 'entry' | 'files'>): string | undefined {
  const dir = path.join(root, COMPILE_CACHE_DIR)
  // Short of room: every cache goes (what they hold goes back to the data), and none is kept.
  let free = Number.POSITIVE_INFINITY
  try {
    const fs = statfsSync(root)
    free = fs.bavail * fs.bsize
  } catch {} // cannot tell: a cache Node cannot write is no harm
  if (free < COMPILE_CACHE_MIN_FREE) {
    try {
      rmSync(dir, { recursive: true, force: true })
    } catch {} // a read-only disk: nothing can be written there either
    return undefined
  }
  const name = `${slot}-${(manifest.files.find((f) => f.path === manifest.entry)?.sha256 ?? 'unknown').slice(0, 16)}`
  let names: string[] = []
  try {
    names = readdirSync(dir)
  } catch {} // none yet: Node makes it
  for (const n of names) {
    if (!n.startsWith(`${slot}-`) || n === name) continue
    try {
      rmSync(path.join(dir, n), { recursive: true, force: true })
    } catch {} // a read-only disk: left, and Node cannot write a cache there either
  }
  return path.join(dir, name)
}
export const otherSlot = (slot: SlotName): SlotName => (slot === 'a' ? 'b' : 'a')
// node:crypto when first used: a device bundle carries this module for its slot and pointer
// functions (runtime/ota/install.ts), and loading node:crypto would cost its start about 5 ms.
let cryptoModule: typeof import('node:crypto') | undefined
const crypto = (): typeof import('node:crypto') => (cryptoModule ??= createRequire(import.meta.url)('node:crypto') as typeof import('node:crypto'))
const sha256 = (b: Uint8Array): string => crypto().createHash('sha256').update(b).digest('hex')
const errText = (err: unknown): string => (err instanceof Error ? err.message : String(err))
const attempt = <T>(f: () => T): T | undefined => { try { return f() } catch { return undefined } }

/** The most a manifest or its signature may weigh, bytes. */
export const MAX_MANIFEST_BYTES = 16 * 1024 * 1024

/**
 * Reads `file`, which must be a regular file of at most `maxBytes`. Opened without waiting and
 * looked at before it is read: a FIFO (whose open and read wait for a writer), a device
 * (/dev/zero never ends), a folder or a file too large is refused, never read.
 * @throws an Error whose code is ENOTREG (not a regular file) or EFBIG (too large), or the system's (ENOENT, …)
 */
export function readRegularFile(file: string, maxBytes: number): Buffer {
  const fd = openSync(file, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK)
  try {
    const st = fstatSync(fd)
    if (!st.isFile()) throw Object.assign(new Error(`${path.basename(file)} is not a regular file`), { code: 'ENOTREG' })
    if (st.size > maxBytes) throw Object.assign(new Error(`${path.basename(file)} is larger than ${maxBytes} bytes (${st.size})`), { code: 'EFBIG' })
    const bytes = Buffer.allocUnsafe(st.size)
    let n = 0
    for (let r = 1; n < st.size && r > 0; n += r) r = readSync(fd, bytes, n, st.size - n, null)
    return n === st.size ? bytes : bytes.subarray(0, n)
  } finally {
    closeSync(fd)
  }
}

/** Flushes a folder's entries (a rename in it) to the disk; not every platform can open a folder. */
export function syncDir(dir: string): void {
  let fd: number | undefined
  try {
    fd = openSync(dir, 'r')
    fsyncSync(fd)
  } catch {
    // Windows: folders cannot be opened; renames there are durable by themselves.
  } finally {
    if (fd !== undefined) closeSync(fd)
  }
}

/** Writes `file` so that a reader (or a power cut) finds the old bytes or the new ones, never a part: a new file, flushed, renamed over, the folder flushed; failed (a full disk), no temporary file stays. */
export function writeFileAtomic(file: string, data: string | Uint8Array, mode = 0o644): void {
  const tmp = `${file}.${process.pid}.tmp`
  try {
    const fd = openSync(tmp, 'w', mode)
    try {
      writeFileSync(fd, data)
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
    renameSync(tmp, file)
  } catch (err) {
    rmSync(tmp, { force: true })
    throw err
  }
  syncDir(path.dirname(file))
}

const readJson = (file: string): unknown => {
  try {
    return JSON.parse(readRegularFile(file, MAX_MANIFEST_BYTES).toString('utf8'))
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return undefined
    throw new Error(`${file} is not readable JSON: ${errText(err)}`)
  }
}

/** active.json, or undefined when nothing was ever switched to. @throws when it is there but not a boot pointer */
export function readPointer(root: string): BootPointer | undefined {
  const p = readJson(path.join(root, POINTER_FILE)) as Partial<BootPointer> | undefined
  if (p === undefined) return undefined
  const slot = (s: unknown): boolean => s === 'a' || s === 'b'
  if (p?.format !== 1 || !slot(p.slot) || !(p.previous === null || (slot(p.previous) && p.previous !== p.slot)) || typeof p.confirmed !== 'boolean' || !Number.isSafeInteger(p.starts)) {
    throw new Error(`${path.join(root, POINTER_FILE)} is not a boot pointer`)
  }
  return p as BootPointer
}

/** What loadPointer found: the pointer; for a damaged active.json, why, and the pointer recovered (or why there is none). */
export interface PointerRead { pointer: BootPointer | undefined; damaged?: string; because?: string; none?: string; saved?: boolean }

/** active.json; when it is there but damaged (cut short on a card, edited by hand), a confirmed pointer to the slot to recover to:
 *  of those that verify, the one state.json names as last started (kept or rolled back to), else the newer build, else a.
 *  With `write`, the damaged bytes are kept as active.json.damaged and the new pointer written (`saved`). */
export function loadPointer(root: string, write?: (file: string, data: string | Uint8Array) => boolean): PointerRead {
  try {
    return { pointer: readPointer(root) }
  } catch (err) {
    const damaged = errText(err)
    const v = { a: verifySlot(root, 'a'), b: verifySlot(root, 'b') }
    const time = (s: SlotName): number => ('manifest' in v[s] ? Date.parse(v[s].manifest.buildTime) : NaN)
    const last = attempt(() => readState(root)) // a damaged state.json names no slot
    const named = /^(success|rolled-back)$/.test(String(last?.outcome)) && /^[ab]$/.test(String(last?.slot)) ? (last!.slot as SlotName) : undefined
    const slot: SlotName | undefined = named !== undefined && 'manifest' in v[named] ? named : !('manifest' in v.a) ? ('manifest' in v.b ? 'b' : undefined) : time('b') > time('a') ? 'b' : 'a'
    const bytes = attempt(() => readRegularFile(path.join(root, POINTER_FILE), MAX_MANIFEST_BYTES))
    if (write !== undefined && bytes !== undefined) write(`${POINTER_FILE}.damaged`, bytes)
    if (slot === undefined) return { pointer: undefined, damaged, none: `${damaged}, and neither slot verifies (${(v.a as { problem: string }).problem}; ${(v.b as { problem: string }).problem})` }
    const because = slot === named ? `${STATE_FILE} names it as the slot last started` : !('manifest' in v[otherSlot(slot)]) ? `slot ${otherSlot(slot)} does not verify` : time(slot) > time(otherSlot(slot)) ? 'the newer build' : 'both built at the same time'
    const pointer: BootPointer = { format: 1, slot, previous: null, confirmed: true, starts: 0, switchedAt: new Date().toISOString() }
    return { pointer, damaged, because, saved: write?.(POINTER_FILE, `${JSON.stringify(pointer, null, 2)}\n`) ?? false }
  }
}

export const writePointer = (root: string, p: BootPointer): void => writeFileAtomic(path.join(root, POINTER_FILE), `${JSON.stringify(p, null, 2)}\n`)
export const readState = (root: string): LaunchOutcome | undefined => readJson(path.join(root, STATE_FILE)) as LaunchOutcome | undefined

/** The id of a public key: the first 16 hex digits of the sha256 of its SPKI DER form (as build/signing.ts). */
export const keyIdOf = (key: KeyObject): string => sha256(key.export({ type: 'spki', format: 'der' })).slice(0, 16)

/** The device's trusted keys (keys/*.pem) by id; a file that is not an Ed25519 public key is left out. */
export function readTrustedKeys(root: string): Map<string, KeyObject> {
  const keys = new Map<string, KeyObject>()
  let names: string[] = []
  try {
    names = readdirSync(path.join(root, KEYS_DIR)).filter((n) => n.endsWith('.pem'))
  } catch {
    return keys
  }
  for (const name of names) {
    try {
      const key = crypto().createPublicKey(readRegularFile(path.join(root, KEYS_DIR, name), 64 * 1024))
      if (key.asymmetricKeyType === 'ed25519') keys.set(keyIdOf(key), key)
    } catch {
      // Not a key: trusted nothing.
    }
  }
  return keys
}

const plainName = (n: unknown): n is string => typeof n === 'string' && n !== '' && n !== '.' && n !== '..' && !/[\\/\0]/.test(n)

/**
 * Checks a slot as outpost flash did before it switched to it: manifest.sig is a trusted key's
 * signature of manifest.json, every file is there with its size and sha256 and there is no other,
 * and the addon is for this Node, platform and architecture.
 * @returns the manifest, or why the slot cannot start (with the code verifyBundle would give)
 */
export function verifySlot(root: string, slot: SlotName, keys: Map<string, KeyObject> = readTrustedKeys(root)): { manifest: SlotManifest } | { problem: string } {
  return verifyDir(slotDir(root, slot), `slot ${slot}`, keys)
}

/** verifySlot's checks on any bundle directory (over-the-air flashing checks its received bundle so); `where` names it in the problem. */
export function verifyDir(dir: string, where: string, keys: Map<string, KeyObject>): { manifest: SlotManifest } | { problem: string } {
  try {
    const checked = checkManifest(readRegularFile(path.join(dir, 'manifest.json'), MAX_MANIFEST_BYTES), readRegularFile(path.join(dir, 'manifest.sig'), MAX_MANIFEST_BYTES), where, keys)
    if ('problem' in checked) return checked
    const m = checked.manifest
    const listed = new Set(['manifest.json', 'manifest.sig', ...m.files.map((f) => f.path)])
    const extra = readdirSync(dir).find((n) => !listed.has(n))
    if (extra !== undefined) return { problem: `HASH_MISMATCH: ${extra} in ${where} is not in its manifest` }
    for (const f of m.files) {
      // Larger than listed: refused unread.
      const b = readRegularFile(path.join(dir, f.path), Number.isSafeInteger(f.size) ? f.size : 0)
      if (b.byteLength !== f.size || sha256(b) !== f.sha256) return { problem: `HASH_MISMATCH: ${f.path} in ${where} is not the file its manifest lists` }
    }
    return checked
  } catch (err) {
    const code = (err as { code?: string }).code
    if (code === 'ENOENT') return { problem: `HASH_MISMATCH: ${where} is missing a file (${errText(err)})` }
    if (code === 'ENOTREG' || code === 'EFBIG') return { problem: `HASH_MISMATCH: ${where} has a file that is not the one its manifest lists: ${errText(err)}` }
    return { problem: `${where} cannot be read: ${errText(err)}` }
  }
}

/**
 * The checks of a bundle that need no more than its manifest.json and manifest.sig: signed by a
 * trusted key, the entry listed, the addon for this Node, platform and architecture.
 */
export function checkManifest(bytes: Buffer, sigBytes: Buffer, where: string, keys: Map<string, KeyObject>): { manifest: SlotManifest } | { problem: string } {
  let sig: { keyId?: string; signature?: string }
  try {
    sig = JSON.parse(sigBytes.toString('utf8')) as typeof sig
  } catch {
    return { problem: `BAD_SIGNATURE: the signature of ${where} is not a signature file` }
  }
  if (typeof sig !== 'object' || sig === null || typeof sig.keyId !== 'string' || typeof sig.signature !== 'string') return { problem: `BAD_SIGNATURE: the signature of ${where} is not a signature file` }
  const key = keys.get(sig.keyId)
  if (key === undefined) return { problem: `UNKNOWN_KEY: ${where} is signed by key ${sig.keyId}, which this device does not trust` }
  const raw = Buffer.from(sig.signature, 'base64')
  if (raw.byteLength !== 64 || !crypto().verify(null, bytes, key, raw)) return { problem: `BAD_SIGNATURE: the manifest of ${where} does not verify` }
  const m = JSON.parse(bytes.toString('utf8')) as SlotManifest
  if (!Array.isArray(m.files) || !m.files.every((f) => plainName(f.path)) || !m.files.some((f) => f.path === m.entry)) return { problem: `HASH_MISMATCH: the manifest of ${where} does not list its entry` }
  const a = m.addon
  const abi = Number(process.versions.modules)
  if (a !== null && (a.nodeAbi !== abi || a.platform !== process.platform || a.arch !== process.arch)) {
    return { problem: `ABI_MISMATCH: ${where}'s addon is for Node ABI ${a.nodeAbi} on ${a.platform}-${a.arch}; this is ABI ${abi} on ${process.platform}-${process.arch}` }
  }
  return { manifest: m }
}

/** What to start: a slot and its manifest, whether it is on trial, and a rollback to record; or why nothing can start. */
export type Choice =
  | { slot: SlotName; manifest: SlotManifest; trial: boolean; rollback?: { from: SlotName; reason: string; manifest?: SlotManifest }; stuck?: string }
  | { none: string }

/**
 * The slot to start, from the pointer: the active slot when it verifies and, if new, has starts
 * left (`tries`) and no `leave` reason; else the previous slot when it verifies (a rollback);
 * else the active slot anyway when it verifies (there is nowhere to go back to: `stuck`).
 */
export function chooseSlot(root: string, p: BootPointer | undefined, tries: number, leave?: string): Choice {
  if (p === undefined) return { none: `nothing was flashed to ${root} (no ${POINTER_FILE})` }
  const keys = readTrustedKeys(root)
  const cur = verifySlot(root, p.slot, keys)
  const reason = 'problem' in cur ? cur.problem : leave ?? (!p.confirmed && p.starts >= tries ? `slot ${p.slot} was started ${p.starts} times since the switch and never reported ready` : undefined)
  if (reason === undefined && 'manifest' in cur) return { slot: p.slot, manifest: cur.manifest, trial: !p.confirmed }
  const prev = p.previous === null ? undefined : verifySlot(root, p.previous, keys)
  if (p.previous !== null && prev !== undefined && 'manifest' in prev) {
    return { slot: p.previous, manifest: prev.manifest, trial: false, rollback: { from: p.slot, reason: reason!, manifest: 'manifest' in cur ? cur.manifest : undefined } }
  }
  const why = p.previous === null ? 'there is no previous slot' : `previous slot ${p.previous} does not verify either (${(prev as { problem: string }).problem})`
  if ('manifest' in cur) return { slot: p.slot, manifest: cur.manifest, trial: !p.confirmed, stuck: `${reason!}; ${why}, so it is started again` }
  return { none: `${reason!}; ${why}` }
}

const about = (m: SlotManifest | undefined): { device?: string; version?: string; buildTime?: string } => (m === undefined ? {} : { device: m.device, version: m.version, buildTime: m.buildTime })

/**
 * Writes lines to standard output (1) or error (2), the launcher's and the device's it passes on,
 * as the device's logger writes its own (runtime/log-writer.ts): a terminal stopped with Ctrl-S or
 * by a serial console's flow control, or a pipe nobody reads, is waited on for a second at most,
 * then lines are dropped and counted. Through process.stdout, the launcher stopped with its
 * terminal, and ignored SIGTERM. A write that fails for good (EPIPE) turns the lines off.
 */
const lazyLines = (fd: 1 | 2): ((line: string) => void) => {
  let write: ((line: string) => void) | undefined
  return (line) => (write ??= outputLines(fd, { who: 'launcher' }))(line)
}
/** The longest line of a device's output kept waiting for its end (characters). */
const MAX_LINE = 1 << 20
const stdoutLine = lazyLines(1)
const stderrLine = lazyLines(2)

/** One JSON log line (pino's shape, `device: "launcher"`) on stdout. */
function log(level: 30 | 40 | 50 | 60, msg: string, fields: Record<string, unknown> = {}): void {
  stdoutLine(`${JSON.stringify({ level, time: Date.now(), device: 'launcher', ...fields, msg })}\n`)
}

/** A whole-number setting from the environment, or its default. */
function setting(name: string, fallback: number): number {
  const v = process.env[name]
  if (v === undefined || v === '') return fallback
  if (!/^\d{1,9}$/.test(v) || Number(v) < 1) throw new Error(`${name} "${v}" is not accepted; expected a whole number from 1`)
  return Number(v)
}

/** Runs the device until SIGTERM or SIGINT (exit 0), or until no slot can start (exit 1). */
async function run(root: string): Promise<number> {
  // One launcher per device folder: a second one started its device beside the first (which
  // holds the database), took that for a bundle that cannot start, and rolled back a good one.
  const busy = new Set<unknown>()
  let unlock = (): void => {}
  try {
    unlock = takeFolderLock(path.join(root, LAUNCHER_LOCK), (pid) => {
      const err = new Error(`another launcher runs this device${pid === undefined ? '' : ` (pid ${pid})`}; nothing was started or changed (a ${LAUNCHER_LOCK} left with no launcher running may be removed)`)
      busy.add(err)
      return err
    })
  } catch (err) {
    if (busy.has(err)) return (log(50, errText(err)), 1)
    // A read-only or full disk: the device is started all the same, as it is when nothing can be recorded.
    log(40, `cannot write ${LAUNCHER_LOCK}, going on without it: ${errText(err)}`)
  }
  try {
    return await runLocked(root)
  } finally {
    unlock()
  }
}

/** The launcher's work, under its lock. */
async function runLocked(root: string): Promise<number> {
  const readyMs = setting('OUTPOST_LAUNCHER_READY_MS', 60_000)
  const tries = setting('OUTPOST_LAUNCHER_TRIES', 3)
  const restartMs = setting('OUTPOST_LAUNCHER_RESTART_MS', 1_000)
  const probationMs = setting('OUTPOST_LAUNCHER_PROBATION_MS', 10_000)
  const node = { node: { version: process.versions.node, abi: Number(process.versions.modules) }, platform: process.platform, arch: process.arch }
  // What the launcher writes may fail (a full or read-only disk): it says so and goes on without it.
  const tryWrite = (file: string, data: string | Uint8Array): boolean => {
    try {
      return (writeFileAtomic(path.join(root, file), data), true)
    } catch (err) {
      return (log(50, `cannot write ${file}, going on without it: ${errText(err)}`), false)
    }
  }
  let recorded: unknown
  try {
    recorded = readJson(path.join(root, DEVICE_FILE))
  } catch {} // unreadable: written anew
  if (JSON.stringify(recorded) !== JSON.stringify(node)) tryWrite(DEVICE_FILE, `${JSON.stringify(node, null, 2)}\n`)

  let stopping = false
  let child: ReturnType<typeof spawn> | undefined
  let wake: (() => void) | undefined
  const stop = (): void => {
    if (stopping) return
    stopping = true
    log(30, 'stopping')
    if (child === undefined) return wake?.()
    child.kill('SIGTERM')
    setTimeout(() => child?.kill('SIGKILL'), 10_000).unref()
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  const sleep = (ms: number): Promise<void> => new Promise((r) => {
    const t = setTimeout(r, ms)
    wake = () => (clearTimeout(t), r())
  })
  const same = (x: BootPointer | undefined, y: BootPointer): boolean => x !== undefined && (['slot', 'previous', 'confirmed', 'starts', 'switchedAt'] as const).every((k) => x[k] === y[k])
  // A pointer that could not be written stands in for the one on disk it was to replace (starts
  // are still counted, a rollback still made) until that one changes (outpost flash switched it).
  let unsaved: { over: BootPointer; next: BootPointer } | undefined
  const current = (p: BootPointer | undefined): BootPointer | undefined => (unsaved !== undefined && same(p, unsaved.over) ? unsaved.next : p)
  // A damaged active.json gives way to the pointer loadPointer recovers; one not written is unsaved over `broken` (the damaged file).
  const broken: BootPointer = { format: 1, slot: 'a', previous: null, confirmed: true, starts: -1, switchedAt: POINTER_FILE }
  let lost: string | undefined
  const readDisk = (): BootPointer | undefined => {
    const quiet = unsaved?.over === broken // recovered in memory already: not written or said again
    const r = loadPointer(root, quiet ? undefined : tryWrite)
    if (r.damaged === undefined || quiet) return r.damaged === undefined ? r.pointer : broken
    const to = r.none !== undefined ? 'no slot verifies' : `starting slot ${r.pointer!.slot} (${r.because})${r.saved ? ', a new pointer written' : ''}`
    log(40, `${r.damaged}; ${to}; its bytes are kept as ${POINTER_FILE}.damaged`, { file: path.join(root, POINTER_FILE), slot: r.pointer?.slot })
    lost = r.none
    if (r.pointer !== undefined && !r.saved) unsaved = { over: broken, next: r.pointer }
    return r.saved === true ? r.pointer : broken
  }
  /** The pointer is replaced only if it is still the one read (outpost flash may have switched it meanwhile). */
  const replacePointer = (seen: BootPointer, next: BootPointer): boolean => {
    const disk = readDisk()
    if (!same(current(disk), seen)) return false
    unsaved = tryWrite(POINTER_FILE, `${JSON.stringify(next, null, 2)}\n`) ? undefined : { over: disk!, next }
    return true
  }
  const record = (o: LaunchOutcome): void => void tryWrite(STATE_FILE, `${JSON.stringify(o, null, 2)}\n`)

  let leave: string | undefined
  let delay = restartMs
  while (!stopping) {
    const p = current(readDisk())
    const c: Choice = lost !== undefined ? { none: lost } : chooseSlot(root, p, tries, leave)
    leave = undefined
    if ('none' in c) {
      // Recorded before it is said: whoever reads state.json after the line reads this outcome.
      record({ outcome: 'no-bootable-slot', at: new Date().toISOString(), slot: null, reason: c.none })
      log(60, `no slot can start: ${c.none}`)
      return 1
    }
    let pointer = p!
    if (c.rollback !== undefined) {
      const next: BootPointer = { format: 1, slot: c.slot, previous: null, confirmed: true, starts: 0, switchedAt: new Date().toISOString() }
      if (!replacePointer(pointer, next)) continue
      pointer = next
      record({ outcome: 'rolled-back', at: next.switchedAt, slot: c.slot, ...about(c.manifest), from: { slot: c.rollback.from, ...about(c.rollback.manifest) }, reason: c.rollback.reason })
      log(40, `rolled back from slot ${c.rollback.from} to slot ${c.slot}: ${c.rollback.reason}`, { slot: c.slot })
    }
    if (c.stuck !== undefined) log(50, c.stuck, { slot: c.slot })
    if (c.trial) {
      const next = { ...pointer, starts: pointer.starts + 1 }
      if (!replacePointer(pointer, next)) continue
      pointer = next
    }
    const m = c.manifest
    const { slot, trial } = c
    const startedAt = Date.now()
    let ready = false
    let kept = false
    let probation: NodeJS.Timeout | undefined
    let timedOut = false
    let lastError: string | undefined
    let restartAsked = false
    // The launcher's own compile cache unless the device's environment names one (NODE_DISABLE_COMPILE_CACHE=1 turns it off).
    const compileCache = process.env.NODE_COMPILE_CACHE ?? compileCacheOf(root, c.slot, m)
    const proc = spawn(process.execPath, [path.join(slotDir(root, c.slot), m.entry)], {
      cwd: root,
      env: {
        ...process.env, OUTPOST_LOG_FORMAT: 'json', OUTPOST_DATA_DIR: process.env.OUTPOST_DATA_DIR || path.join(root, DATA_DIR), [DEVICE_DIR_ENV]: root, [DEVICE_SLOT_ENV]: c.slot,
        ...(compileCache === undefined ? {} : { NODE_COMPILE_CACHE: compileCache }),
      },
      // The IPC channel tells the device when the launcher is gone, even by SIGKILL: it then stops.
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    })
    child = proc
    /** The device said it is ready (its `ready` log line, or READY_REPORT over IPC). A new slot is kept once it has also run
     *  for the probation time after that: one that crashes just after saying so is rolled back like one that never does. */
    function markReady(): void {
      if (ready || timedOut) return
      ready = true
      clearTimeout(deadline)
      if (!trial) return
      log(30, `slot ${slot} reported ready; it is kept once it has run ${probationMs} ms more`, { slot })
      probation = setTimeout(keep, probationMs)
    }
    /** The new slot passed: no rollback from now on. */
    function keep(): void {
      if (kept || stopping) return
      kept = true
      const next = { ...pointer, confirmed: true, starts: 0 }
      if (replacePointer(pointer, next)) pointer = next
      record({ outcome: 'success', at: new Date().toISOString(), slot, ...about(m) })
      log(30, `slot ${slot} is ready: kept (no rollback from now on)`, { slot })
    }
    // A device that switched the pointer itself (a bundle installed over the air) asks to be started again.
    proc.on('message', (m: unknown) => {
      if (m === READY_REPORT) return markReady()
      if (m !== RESTART_REQUEST || restartAsked || stopping) return
      restartAsked = true
      log(30, `slot ${c.slot} asked to be restarted (the active slot was switched); stopping it`, { slot: c.slot })
      proc.kill('SIGTERM')
      setTimeout(() => proc.kill('SIGKILL'), 10_000).unref()
    })
    log(30, `started slot ${c.slot}: ${m.device} ${m.version}, built ${m.buildTime}${c.trial && c.stuck === undefined ? ` (new: start ${pointer.starts} of ${tries}, ready within ${readyMs} ms)` : ''}`, { slot: c.slot, pid: proc.pid })
    const onLine = (stream: NodeJS.ReadableStream, out: (line: string) => void, each: (line: string) => void): void => {
      let buf = ''
      stream.setEncoding('utf8')
      stream.on('data', (chunk: string) => {
        // Only the new text is searched for line ends: what was kept has none.
        const from = buf.length
        buf += chunk
        for (let nl = buf.indexOf('\n', from); nl >= 0; nl = buf.indexOf('\n')) {
          const line = buf.slice(0, nl)
          buf = buf.slice(nl + 1)
          out(`${line}\n`)
          each(line)
        }
        // A device writing without line ends does not fill the launcher's memory: past
        // MAX_LINE, what it wrote is passed on as a line of its own.
        if (buf.length > MAX_LINE) {
          out(`${buf}\n`)
          each(buf)
          buf = ''
        }
      })
    }
    // A new slot that can still be rolled back has a deadline; one with nowhere to go back to is only restarted.
    const onTrial = c.trial && c.stuck === undefined
    const deadline = onTrial ? setTimeout(() => {
      timedOut = true
      proc.kill('SIGTERM')
      setTimeout(() => proc.kill('SIGKILL'), 5_000).unref()
    }, readyMs) : undefined
    onLine(proc.stdout!, stdoutLine, (line) => {
      let entry: { msg?: unknown; level?: unknown; code?: unknown } | undefined
      try {
        entry = line.startsWith('{') ? (JSON.parse(line) as typeof entry) : undefined
      } catch {} // not a JSON line
      if (entry !== undefined && typeof entry.level === 'number' && entry.level >= 50) lastError = typeof entry.code === 'string' && !String(entry.msg).startsWith(`${entry.code}:`) ? `${entry.code}: ${String(entry.msg)}` : String(entry.msg)
      if (entry?.msg === 'ready') markReady()
    })
    // What Node prints for an uncaught error ends with the stack and its own version: the reason is the error's line above them.
    onLine(proc.stderr!, stderrLine, (line) => {
      if (line.trim() !== '' && !/^\s+at\s/.test(line) && !/^Node\.js v\d/.test(line)) lastError = line.trim()
    })
    const exit = await new Promise<string>((resolve) => {
      proc.once('error', (err) => resolve(`could not be started: ${err.message}`))
      proc.once('close', (code, signal) => resolve(signal === null ? `exited with code ${code}` : `was ended by ${signal}`))
    })
    child = undefined
    clearTimeout(deadline)
    clearTimeout(probation)
    if (stopping) break
    if (restartAsked) continue
    const why = `${exit}${lastError === undefined ? '' : `: ${lastError.slice(0, 300)}`}`
    if (onTrial && !kept) {
      const when = ready ? `within ${probationMs} ms of reporting ready` : 'before it was ready'
      if (timedOut) leave = `slot ${c.slot} did not report ready within ${readyMs} ms`
      else if (pointer.starts >= tries) leave = `slot ${c.slot} ${why} ${when}, ${pointer.starts} starts in a row`
      log(40, `slot ${c.slot} ${timedOut ? 'was not ready in time' : `${why} ${when}`}${leave === undefined ? `; starting it again (start ${pointer.starts} of ${tries})` : ''}`, { slot: c.slot })
      if (leave === undefined) await sleep(restartMs)
      continue
    }
    // A slot that is kept is restarted, ever later while it keeps failing soon after starting.
    delay = Date.now() - startedAt > 60_000 ? restartMs : delay
    log(50, `slot ${c.slot} ${why}; restarting it in ${delay} ms`, { slot: c.slot })
    await sleep(delay)
    delay = Math.min(delay * 2, 60_000)
  }
  log(30, 'stopped')
  return 0
}

/** `--check`: the slot the launcher would start, as one JSON line; exit code 1 when none. */
function check(root: string): number {
  const tries = setting('OUTPOST_LAUNCHER_TRIES', 3)
  const r = loadPointer(root)
  const c: Choice = r.none !== undefined ? { none: r.none } : chooseSlot(root, r.pointer, tries)
  if ('none' in c) {
    process.stderr.write(`launcher: no slot can start: ${c.none}\n`)
    return 1
  }
  process.stdout.write(`${JSON.stringify({ slot: c.slot, ...about(c.manifest), entry: c.manifest.entry, trial: c.trial, damaged: r.damaged, rollback: c.rollback === undefined ? undefined : { from: c.rollback.from, reason: c.rollback.reason } })}\n`)
  return 0
}

/** This boot of the machine (Linux); a lock written in another boot names no live process. */
function bootId(): string {
  try {
    // (A file of /proc says it has no size: read as it comes.)
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
  } catch {
    return ''
  }
}

/** True when process `pid` runs (one of another user's too); false for what is not a process id. */
export function running(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as { code?: string }).code === 'EPERM'
  }
}

/** How long a lock file may stay empty before it is taken as left over, ms. */
const EMPTY_LOCK_MS = 10_000

/** How long ago `file` was last written, ms; Infinity when it cannot be looked at. */
function ageMs(file: string): number {
  try {
    return Date.now() - statSync(file).mtimeMs
  } catch {
    return Infinity
  }
}

/**
 * Takes lock file `file` (`<pid> <boot id>`) for this process, until the function returned is
 * called. A lock left by a process that is gone (kill -9, a power cut: another boot) is taken over.
 * @throws busy(pid) when a running process holds it; what writing the folder throws (a full or read-only disk)
 */
export function takeFolderLock(file: string, busy: (pid: number | undefined) => Error): () => void {
  const boot = bootId()
  const mine = `${process.pid} ${boot}\n`
  for (let taken = false; ; taken = true) {
    try {
      // Made, then written: a write that fails (a full disk) removes the file it made, which would
      // otherwise stay empty and be taken for a lock being written.
      const fd = openSync(file, 'wx')
      try {
        writeSync(fd, mine)
      } catch (err) {
        rmSync(file, { force: true })
        throw err
      } finally {
        closeSync(fd)
      }
      return () => {
        try {
          if (readRegularFile(file, 1024).toString('utf8') === mine) rmSync(file, { force: true })
        } catch {
          // Gone already.
        }
      }
    } catch (err) {
      if ((err as { code?: string }).code !== 'EEXIST') throw err
      let holder = ''
      try {
        holder = readRegularFile(file, 1024).toString('utf8')
      } catch {
        // Removed meanwhile, or not a lock: taken over below.
      }
      const [pid, theirBoot] = holder.trim().split(' ')
      // Empty or cut short of its line end: made a moment ago by a process still writing its pid into it
      // (the write follows the create), so held; taken as left over, it let two flashes of one
      // folder run at once (a CI run). Left so for long, it is what a process killed in between left.
      const writing = /^(\d+( [0-9a-f-]*)?)?$/.test(holder)
      const live = writing ? ageMs(file) < EMPTY_LOCK_MS : /^\d+$/.test(pid ?? '') && (theirBoot ?? '') === boot && running(Number(pid))
      if (live || taken) throw busy(live && /^\d+$/.test(pid ?? '') ? Number(pid) : undefined)
      rmSync(file, { force: true })
    }
  }
}

/** The file in a device's folder that says a launcher runs it: `<pid> <boot id>`. */
export const LAUNCHER_LOCK = 'launcher.lock'

/**
 * Runs the launcher when this file is the program (`node launcher.mjs`). Device bundles import this
 * module's helpers (over-the-air flashing, runtime/ota/): there `launched` is unused and, the call
 * being marked pure, the bundler leaves it out together with run() and check(); should it stay,
 * the file's name (launcher.*, never a device bundle's) keeps it from running.
 */
function main(): Promise<void> | undefined {
  const self = fileURLToPath(import.meta.url)
  let isMain = false
  try {
    isMain = /^launcher\.[cm]?[jt]s$/.test(path.basename(self)) && process.argv[1] !== undefined && realpathSync(process.argv[1]) === realpathSync(self)
  } catch {
    isMain = false
  }
  if (!isMain) return undefined
  const args = process.argv.slice(2)
  const root = path.dirname(self)
  if (args.length > 1 || (args.length === 1 && args[0] !== '--check')) {
    process.stderr.write(`launcher: unknown argument ${args.find((a) => a !== '--check')}; usage: node launcher.mjs [--check]\n`)
    process.exit(2)
  }
  return (async () => {
    try {
      process.exitCode = args[0] === '--check' ? check(root) : await run(root)
    } catch (err) {
      process.stderr.write(`launcher: ${errText(err)}\n`)
      process.exitCode = 1
    }
  })()
}
export const launched = /* @__PURE__ */ main()
