// A device's code after esbuild: a second pass by terser, which compresses what esbuild's minifier
// leaves (two passes of its compressor, names mangled at the top level of the file too). On the
// devices of this project it takes 4-5 KB off the code and 5 KB off its gzip size (terser names
// the variables of sibling functions alike, which gzip finds again). The source map goes through
// with it (build/await-mappings.ts puts back what terser leaves unmapped that stacks show).
//
// A pass takes seconds, so its result is kept in the project's build cache under a hash of what it
// was given: a device built again from the same sources is compressed once. The cache is only a
// shortcut: an entry is used only when it is a regular file that holds, under a hash of its own,
// the result for that very input; anything else is compressed again (and the entry replaced).
import { createHash } from 'node:crypto'
import { createRequire } from 'node:module'
import { lstat, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { minify, type MinifyOptions } from 'terser'
import { ErrorCode, errorMessage, OutpostError } from '../runtime/errors.js'
import { mapAwaits } from './await-mappings.js'

/** terser's options for a device's code for Node >= 20, run as the main code of its process. */
const TERSER_OPTIONS = {
  ecma: 2020,
  // The file's top level is the body of Node's CommonJS wrapper: nothing outside reads its names.
  toplevel: true,
  compress: { passes: 2 },
  mangle: true,
  format: { ecma: 2020 },
} as const satisfies MinifyOptions

/** terser's version: a new one may compress differently, so it is part of the cache key. */
export const TERSER_VERSION = (createRequire(import.meta.url)('terser/package.json') as { version: string }).version

/** The newest entries the cache keeps (each is a device's code and map, under 1 MB for the demo devices). */
const CACHE_ENTRIES = 32

/** The largest cache entry read (a bigger file is not one this build wrote). */
const MAX_ENTRY_BYTES = 64 * 1024 * 1024

/** What the pass gives: the code, ending with the comment that links `<fileName>.map`, and the map. */
export interface Compressed {
  code: Uint8Array
  /** The source map (JSON text), its sources as given. */
  map: string
}

/** One cache entry, as stored: the result for input `key`, and a hash that ties the two. */
interface Entry {
  key: string
  sha256: string
  code: string
  map: string
}

/** Where compressed code is kept, in the project at `root`. */
const cacheDir = (root: string): string => path.join(root, 'node_modules', '.cache', 'outpost-build', 'compressed')

const sha256 = (...parts: string[]): string => {
  const h = createHash('sha256')
  for (const p of parts) h.update(p).update('\0')
  return h.digest('hex')
}

/** The cached result for `key`, or undefined when there is none that can be trusted. */
async function readEntry(file: string, key: string): Promise<Entry | undefined> {
  try {
    // A regular file of a sane size only: not a FIFO that would never end, not a link to /dev/zero.
    const s = await lstat(file)
    if (!s.isFile() || s.size > MAX_ENTRY_BYTES) return undefined
    const entry = JSON.parse(await readFile(file, 'utf8')) as Partial<Entry>
    if (entry.key !== key || typeof entry.code !== 'string' || typeof entry.map !== 'string') return undefined
    return entry.sha256 === sha256(key, entry.code, entry.map) ? (entry as Entry) : undefined
  } catch {
    return undefined
  }
}

/** Writes the entry whole or not at all, then keeps only the newest entries. */
async function writeEntry(dir: string, file: string, entry: Entry): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`
  try {
    await mkdir(dir, { recursive: true })
    await writeFile(tmp, JSON.stringify(entry))
    await rename(tmp, file)
  } catch {
    // A cache that cannot be written (a read-only project, a full disk) costs the next build the
    // pass again; nothing half-written is left in it.
    await rm(tmp, { force: true }).catch(() => {})
    return
  }
  try {
    const names = (await readdir(dir)).filter((n) => n.endsWith('.json'))
    if (names.length <= CACHE_ENTRIES) return
    const aged = await Promise.all(names.map(async (n) => ({ n, t: await stat(path.join(dir, n)).then((s) => s.mtimeMs, () => 0) })))
    aged.sort((a, b) => b.t - a.t)
    await Promise.all(aged.slice(CACHE_ENTRIES).map(({ n }) => rm(path.join(dir, n), { force: true, recursive: true })))
  } catch {
    // Pruning is housekeeping: the next build tries again.
  }
}

/**
 * `code` (esbuild's minified output in `format`, named `fileName`) and its source map `map`
 * (sources named as the bundle's map names them) through terser. The result depends on the inputs
 * only (terser is deterministic), so builds stay reproducible; so does the cache key, which is why
 * the map is given with its sources already relative to the project, not to the output folder.
 * @throws BUILD_FAILED naming what terser could not read (it reads what esbuild wrote: a bug, not the device's)
 */
export async function compressCode(name: string, code: string, map: string, fileName: string, root: string, format: 'cjs' | 'esm'): Promise<Compressed> {
  // A copy of its own: terser writes into the option objects it is given.
  const options: MinifyOptions = { ...structuredClone(TERSER_OPTIONS), module: format === 'esm' }
  const key = sha256(TERSER_VERSION, JSON.stringify(options), fileName, code, map)
  const dir = cacheDir(root)
  const file = path.join(dir, `${key}.json`)
  const cached = await readEntry(file, key)
  if (cached !== undefined) return { code: Buffer.from(cached.code), map: cached.map }
  let result
  try {
    result = await minify({ [fileName]: code }, { ...structuredClone(options), sourceMap: { content: map, url: `${fileName}.map` } })
  } catch (err) {
    throw new OutpostError(ErrorCode.BUILD_FAILED, `device ${name} could not be compressed (terser): ${errorMessage(err)}`, { cause: err })
  }
  const out = result.code ?? ''
  const outMap = mapAwaits(out, typeof result.map === 'string' ? result.map : JSON.stringify(result.map))
  await writeEntry(dir, file, { key, sha256: sha256(key, out, outMap), code: out, map: outMap })
  return { code: Buffer.from(out), map: outMap }
}
