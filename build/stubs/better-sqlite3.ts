// better-sqlite3 as a device bundle has it: the package's JavaScript, with the native addon taken
// from the file beside the bundle (ADDON_FILE, which outpost build copies there) through the
// Database constructor's `nativeBinding` option, so the bundle needs no node_modules. Every
// `import Database from 'better-sqlite3'` in the bundle gets this module instead (the import
// below alone reaches the package: build/device-stubs.ts).
import { closeSync, openSync, readSync, statSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import Database from 'better-sqlite3'
import { ErrorCode, errorMessage, isOutpostError, OutpostError } from '../../runtime/errors.js'

/** The addon's file name in a bundle directory. */
export const ADDON_FILE = 'better_sqlite3.node'

type Addon = object
let addon: Addon | undefined

/**
 * Loads the addon beside the bundle once. @throws ABI_MISMATCH when it is missing or is not for
 * this Node (another ABI, platform or architecture), with Node's own reason
 */
function loadAddon(): Addon {
  if (addon !== undefined) return addon
  const file = fileURLToPath(new URL(`./${ADDON_FILE}`, import.meta.url))
  try {
    // As require() loads a .node file, without its search for the file and its package (0.4 ms of
    // the start here): the path is known, and this module keeps the one it loaded.
    // A FIFO in its place would hold the start for ever in dlopen's open: files only.
    const stat = statSync(file)
    if (!stat.isFile()) throw new Error(`${file} is not a file`)
    // A file cut short (a copy interrupted, a full disk) would be mapped past its end, and the
    // process killed by SIGBUS with no word: its size is checked against its own headers first.
    const least = elfEnd(file)
    if (least !== undefined && stat.size < least) {
      throw new OutpostError(
        ErrorCode.HASH_MISMATCH,
        `the SQLite addon of this device bundle (${file}) is cut short: ${stat.size} bytes, where its own headers need at least ${least} (a copy interrupted, a full disk?); copy or flash the bundle again`,
        { details: { file: ADDON_FILE, expected: { leastSize: least }, actual: { size: stat.size } } },
      )
    }
    const module = { exports: {} as Addon }
    process.dlopen(module, file)
    addon = module.exports
    return addon
  } catch (err) {
    if (isOutpostError(err, ErrorCode.HASH_MISMATCH)) throw err
    throw new OutpostError(
      ErrorCode.ABI_MISMATCH,
      `the SQLite addon of this device bundle (${file}) cannot be loaded by Node ${process.version} (ABI ${process.versions.modules}, ${process.platform}-${process.arch}): ${errorMessage(err).split('\n')[0]}; rebuild the bundle for this target (outpost build --addon)`,
      { cause: err },
    )
  }
}

/**
 * The least size an ELF file (a Linux addon) must have: where its last segment and its section
 * headers end, read from its own headers; undefined for a file that is not ELF (another
 * platform's addon, which dlopen judges) or too short to say.
 */
function elfEnd(file: string): number | undefined {
  const fd = openSync(file, 'r')
  try {
    const head = Buffer.alloc(64)
    if (readSync(fd, head, 0, 64, 0) < 52 || head.readUInt32BE(0) !== 0x7f454c46) return undefined
    // Only a header that is plainly ELF's (class, byte order, version, entry sizes) is read on.
    if ((head[4] !== 1 && head[4] !== 2) || (head[5] !== 1 && head[5] !== 2) || head[6] !== 1) return undefined
    const wide = head[4] === 2
    const le = head[5] === 1
    const u16 = (b: Buffer, at: number): number => (le ? b.readUInt16LE(at) : b.readUInt16BE(at))
    const word = (b: Buffer, at: number): number => (wide ? Number(le ? b.readBigUInt64LE(at) : b.readBigUInt64BE(at)) : le ? b.readUInt32LE(at) : b.readUInt32BE(at))
    const [phoff, shoff] = wide ? [word(head, 32), word(head, 40)] : [word(head, 28), word(head, 32)]
    const [phentsize, phnum, shentsize, shnum] = wide ? [u16(head, 54), u16(head, 56), u16(head, 58), u16(head, 60)] : [u16(head, 42), u16(head, 44), u16(head, 46), u16(head, 48)]
    // (0xffff program headers: the count is elsewhere, in section 0; no addon has so many.)
    if (phentsize !== (wide ? 56 : 32) || phnum === 0xffff || (shnum > 0 && shentsize !== (wide ? 64 : 40))) return undefined
    let end = shnum > 0 ? shoff + shnum * shentsize : 0
    const table = Buffer.alloc(phnum * phentsize)
    if (readSync(fd, table, 0, table.length, phoff) < table.length) return Math.max(end, phoff + table.length)
    // Each segment's bytes in the file: p_offset and p_filesz.
    for (let i = 0; i < phnum; i++) {
      const at = i * phentsize
      end = Math.max(end, wide ? word(table, at + 8) + word(table, at + 32) : word(table, at + 4) + word(table, at + 16))
    }
    return end
  } finally {
    closeSync(fd)
  }
}

/** better-sqlite3's Database, constructed with the bundle's addon unless the caller gives one. */
function BundledDatabase(filename?: string | Buffer, options?: Database.Options): Database.Database {
  // The package takes the loaded addon object as well as a path (its types say only string).
  return new Database(filename, { ...options, nativeBinding: options?.nativeBinding ?? (loadAddon() as unknown as string) })
}
// `new BundledDatabase(...)` returns the Database made inside: instanceof and statics as the package's.
BundledDatabase.prototype = Database.prototype
Object.setPrototypeOf(BundledDatabase, Database)

export default BundledDatabase as unknown as typeof Database
