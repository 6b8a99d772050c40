// better-sqlite3 as a device bundle has it: the package's JavaScript, with the native addon taken
// from the file beside the bundle (ADDON_FILE, which outpost build copies there) through the
// Database constructor's `nativeBinding` option, so the bundle needs no node_modules. Every
// `import Database from 'better-sqlite3'` in the bundle gets this module instead (the import
// below alone reaches the package: build/device-stubs.ts).
import { statSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import Database from 'better-sqlite3'
import { ErrorCode, errorMessage, OutpostError } from '../../runtime/errors.js'

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
    if (!statSync(file).isFile()) throw new Error(`${file} is not a file`)
    const module = { exports: {} as Addon }
    process.dlopen(module, file)
    addon = module.exports
    return addon
  } catch (err) {
    throw new OutpostError(
      ErrorCode.ABI_MISMATCH,
      `the SQLite addon of this device bundle (${file}) cannot be loaded by Node ${process.version} (ABI ${process.versions.modules}, ${process.platform}-${process.arch}): ${errorMessage(err).split('\n')[0]}; rebuild the bundle for this target (outpost build --addon)`,
      { cause: err },
    )
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
