// The entry of a device bundle (`<device>.cjs`): it runs the device's code (`<device>.code.cjs`,
// beside it) from a V8 code cache when one is given, and keeps that cache. The build compiles this
// file to CommonJS with the code's name and sha256 written in (build/bundle.ts); it requires
// Node's built-ins only.
//
// Why: Node 20 compiles an ES module of ~300 KB at every start (~15-20 ms on a small CPU) and has
// no cache for it; a CommonJS script compiled through node:vm can take V8's code cache, made after
// the device reported ready (with every function compiled up to then), and start without
// compiling most of what it runs before ready. Node 22's own compile cache does not cover node:vm.
// The entry itself is CommonJS too: an ES module entry starts Node's ES module loader, which cost
// the thermo 5-7 ms of its start here.
//
// The cache lives in the folder NODE_COMPILE_CACHE names (the launcher gives each slot and bundle
// its own; NODE_DISABLE_COMPILE_CACHE=1 turns it off, as for Node's own cache), in a file named
// after the code's sha256, Node's version and the machine: V8 checks its own version and flags
// but of the source only its length, so a cache must never meet other code. Nor does V8 check
// the cache's bytes (a cache with a few bytes flipped crashed Node 20 at start, exit 133), so the
// file carries a CRC-32 of them (zlib's crc32, Node 20.15 and later; before, no cache is used), and
// one that does not match is not given to V8. A cache V8 rejects (other flags) or that fails its
// check costs nothing but a compile, and is made again after ready.
import { closeSync, constants, fstatSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { Script } from 'node:vm'
import { legacyBinding } from '../legacy-binding.js'
import { CODE_CACHE_READY, CODE_STARTED } from './code-cache.js'

declare const __OUTPOST_CODE_FILE__: string
declare const __OUTPOST_CODE_SHA256__: string

// CommonJS: the build writes this file as one (format cjs), so __dirname is the bundle's folder.
const dir = __dirname
const file = join(dir, __OUTPOST_CODE_FILE__)
// Node maps stack traces through source maps (--enable-source-maps) only for code its own loaders
// load, not through node:vm: then the code is loaded by require(), without a cache.
const sourceMaps = (process as { sourceMapsEnabled?: boolean }).sourceMapsEnabled === true || process.execArgv.includes('--enable-source-maps')
const cacheDir = sourceMaps || process.env.NODE_DISABLE_COMPILE_CACHE === '1' ? undefined : process.env.NODE_COMPILE_CACHE || undefined
// Named after the device too: devices that share a folder (one NODE_COMPILE_CACHE for all) keep
// their own caches, and each removes only its own older ones (and those of runners before the name had it).
const device = __OUTPOST_CODE_FILE__.replace(/\.code\.cjs$/, '')
const cacheName = `outpost-${device}-${__OUTPOST_CODE_SHA256__.slice(0, 16)}-${process.version}-${process.platform}-${process.arch}.v8`
const ours = new RegExp(`^outpost-(?:${device.replace(/[^A-Za-z0-9]/g, '\\$&')}-)?[0-9a-f]{16}-v[0-9]`)
const cacheFile = cacheDir === undefined ? undefined : resolve(cacheDir, cacheName)

// CommonJS's wrapper, as Node's loader writes it: the code sees require, module and its own file.
// Positions in stack traces are the file's own (columnOffset takes the wrapper back off line 1).
const WRAPPER = '(function (exports, require, module, __filename, __dirname) {'
const TAIL = '\n})'

/**
 * The device's code as a bundle holds it (`code`), read into one buffer between the wrapper and
 * its tail (`wrapped`): the source V8 compiles is then one string made once, not the code's
 * string joined to the wrapper's and copied again when V8 flattens the two (300 KB and more).
 * A code file that is gone, unreadable, empty or not a file ends the start with one line
 * (HASH_MISMATCH: a file missing or not the size its manifest gives; exit 1).
 */
function readCode(): { code: Buffer; wrapped: Buffer } {
  let wrapped: Buffer | undefined
  let got = 0
  try {
    // Without waiting: a FIFO in its place opened for reading would wait for a writer forever.
    const fd = openSync(file, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0))
    try {
      const stat = fstatSync(fd)
      if (!stat.isFile()) fail(`its code ${file} is not a file (a FIFO, a device, a socket)`)
      const size = stat.size
      // One byte more than its size: a file that grew meanwhile is read whole below.
      const all = Buffer.allocUnsafe(WRAPPER.length + size + 1 + TAIL.length)
      all.write(WRAPPER, 0, 'latin1')
      for (let n = -1; n !== 0 && got < size + 1; got += n) n = readSync(fd, all, WRAPPER.length + got, size + 1 - got, null)
      if (got > size) {
        const rest = readFileSync(fd)
        wrapped = Buffer.concat([all.subarray(0, WRAPPER.length + got), rest, Buffer.from(TAIL, 'latin1')])
        got += rest.length
      } else {
        all.write(TAIL, WRAPPER.length + got, 'latin1')
        wrapped = all.subarray(0, WRAPPER.length + got + TAIL.length)
      }
    } finally {
      closeSync(fd)
    }
  } catch (err) {
    fail(`its code ${file} cannot be read (${(err as Error).message})`)
  }
  if (got === 0) fail(`its code ${file} is empty`)
  return { code: wrapped.subarray(WRAPPER.length, WRAPPER.length + got), wrapped }
}
function fail(why: string): never {
  process.stderr.write(`outpost: HASH_MISMATCH: this device bundle cannot start: ${why}; build or flash the bundle again\n`)
  process.exit(1)
}

// The file: CACHE_MAGIC, the CRC-32 of the rest (4 bytes each, little-endian), then the CRC-32s of
// the code and of its path that V8's data was made from, then V8's data. V8 checks of the source
// only its length: a code file changed in place (the same length) met the old cache, ran old and
// new code mixed, or failed at every start; a copy of the bundle named the old place in its stacks.
const CACHE_MAGIC = 0x3976704f // 'Opv9'
const HEADER = 16
type Crc32 = (data: Uint8Array) => number
/**
 * zlib's CRC-32. Node's zlib module loads node:stream as it loads (1.3-1.5 ms of a start here, and
 * nothing the device loads before ready needs it): its native function is taken from Node's own
 * binding where there is one, the module otherwise. process.binding is deprecated (DEP0111, a
 * warning when pending deprecations are on): then, and under --throw-deprecation, the module.
 */
function crc32Of(): Crc32 | undefined {
  const native = legacyBinding<{ crc32?: unknown }>('zlib')?.crc32
  if (typeof native === 'function') return (data) => (native as (data: Uint8Array, value: number) => number)(data, 0)
  return (require('node:zlib') as { crc32?: Crc32 }).crc32
}
const crc32 = cacheFile === undefined ? undefined : crc32Of()
const usable = cacheFile !== undefined && typeof crc32 === 'function'

const read = sourceMaps ? undefined : readCode()
const code = read?.code
/** What the cache must have been made from: this code, at this path. */
const made = usable && code !== undefined ? [crc32!(code), crc32!(Buffer.from(file))] : undefined
let cached: Buffer | undefined
if (made !== undefined) {
  try {
    const bytes = readFileSync(cacheFile!)
    if (bytes.length > HEADER && bytes.readUInt32LE(0) === CACHE_MAGIC && bytes.readUInt32LE(4) === crc32!(bytes.subarray(8)) && bytes.readUInt32LE(8) === made[0] && bytes.readUInt32LE(12) === made[1]) cached = bytes.subarray(HEADER)
  } catch {} // none yet (or unreadable): compiled as without a cache
}
const script = read === undefined ? undefined : new Script(read.wrapped.toString('utf8'), {
  filename: file,
  columnOffset: -WRAPPER.length,
  ...(cached === undefined ? {} : { cachedData: cached }),
})

/**
 * Writes the cache (atomically: a power cut leaves the old one or the new one) and removes older
 * ones, and what a write cut short left (a full disk, a process killed while it wrote): the room
 * on a device's disk is its data's. Never throws.
 */
let kept = false
function keepCache(): void {
  if (kept || made === undefined) return
  kept = true
  const folder = dirname(cacheFile!)
  const tmp = `${cacheFile}.${process.pid}.tmp`
  try {
    mkdirSync(folder, { recursive: true })
    const header = Buffer.alloc(HEADER)
    header.writeUInt32LE(CACHE_MAGIC, 0)
    header.writeUInt32LE(made[0]!, 8)
    header.writeUInt32LE(made[1]!, 12)
    const bytes = Buffer.concat([header, script!.createCachedData()])
    bytes.writeUInt32LE(crc32!(bytes.subarray(8)), 4)
    writeFileSync(tmp, bytes)
    renameSync(tmp, cacheFile!)
  } catch {
    // A full or read-only disk: the next start compiles, as without a cache.
    try {
      rmSync(tmp, { force: true })
    } catch {}
  }
  try {
    for (const name of readdirSync(folder)) {
      if (name !== cacheName && ours.test(name) && (name.endsWith('.v8') || name.endsWith('.tmp'))) rmSync(join(folder, name), { force: true })
    }
  } catch {}
}
// Made once the device reported ready (devices/device-config.ts calls it), when there was none or V8 refused it.
if (made !== undefined && (cached === undefined || script?.cachedDataRejected === true)) {
  ;(globalThis as Record<symbol, unknown>)[CODE_CACHE_READY] = (): void => {
    delete (globalThis as Record<symbol, unknown>)[CODE_CACHE_READY]
    setImmediate(keepCache).unref()
    // A process stopped just after ready (a signal) can end before that turn comes: then at its exit.
    process.once('exit', keepCache)
  }
}

if (script === undefined) {
  readCode()
  require(file)
  // Emptied between the check and Node's reading of it, the code ran nothing: the process would
  // have ended at once, silently, with exit code 0.
  if ((globalThis as Record<symbol, unknown>)[CODE_STARTED] !== true) fail(`its code ${file} changed while it started (nothing of it ran)`)
} else {
  const module = { exports: {} }
  // This file's own require: the code is beside it, so both resolve from the same folder (and
  // node:module, not in Node's startup snapshot, is not loaded to make another: 0.3-0.5 ms).
  ;(script.runInThisContext() as (...args: unknown[]) => void).call(module.exports, module.exports, require, module, file, dir)
}
