// A device's code after esbuild: a second pass by terser, which compresses what esbuild's minifier
// leaves (two passes of its compressor, names mangled at the top level of the file too). On the
// devices of this project it takes 4-5 KB off the code and 5 KB off its gzip size (terser names
// the variables of sibling functions alike, which gzip finds again). The source map goes through
// with it: positions in the result map to the TypeScript sources as esbuild's map did.
//
// A pass takes seconds, so its result is kept in the project's build cache under a hash of what it
// was given: a device built again from the same sources is compressed once.
import { createHash } from 'node:crypto'
import { createRequire } from 'node:module'
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { minify, type MinifyOptions } from 'terser'
import { ErrorCode, errorMessage, OutpostError } from '../runtime/errors.js'

/** terser's options for a device's code for Node >= 20, run as the main code of its process. */
const TERSER_OPTIONS = {
  ecma: 2020,
  // The file's top level is the body of Node's CommonJS wrapper: nothing outside reads its names.
  toplevel: true,
  compress: { passes: 2 },
  mangle: true,
  format: { ecma: 2020 },
} as const satisfies MinifyOptions

/** What the pass gives: the code, ending with the comment that links `mapName`, and the map. */
export interface Compressed {
  code: Uint8Array
  /** The source map (JSON text), its sources as esbuild named them. */
  map: string
}

/** Where compressed code is kept, in the project at `root`. */
const cacheDir = (root: string): string => path.join(root, 'node_modules', '.cache', 'outpost-build', 'compressed')

/** terser's version: a new one may compress differently, so it is part of the cache key. */
const TERSER_VERSION = (createRequire(import.meta.url)('terser/package.json') as { version: string }).version

/**
 * `code` (esbuild's minified output in `format`, named `fileName`) and its source map `map` through terser.
 * The result depends on the inputs only (terser is deterministic), so builds stay reproducible.
 * @throws BUILD_FAILED naming what terser could not read (it reads what esbuild wrote: a bug, not the device's)
 */
export async function compressCode(name: string, code: string, map: string, fileName: string, root: string, format: 'cjs' | 'esm'): Promise<Compressed> {
  // An ES module (a device that awaits at its top level) is parsed as one.
  // A copy of its own: terser writes into the option objects it is given.
  const options: MinifyOptions = { ...structuredClone(TERSER_OPTIONS), module: format === 'esm' }
  const key = createHash('sha256').update(JSON.stringify([TERSER_VERSION, options, fileName, code, map])).digest('hex')
  const dir = cacheDir(root)
  const cached = path.join(dir, `${key}.js`)
  try {
    const [c, m] = await Promise.all([readFile(cached), readFile(`${cached}.map`, 'utf8')])
    return { code: c, map: m }
  } catch {
    // Not compressed before (or the cache was emptied): compress now.
  }
  let result
  try {
    result = await minify({ [fileName]: code }, { ...structuredClone(options), sourceMap: { content: map, url: `${fileName}.map` } })
  } catch (err) {
    throw new OutpostError(ErrorCode.BUILD_FAILED, `device ${name} could not be compressed (terser): ${errorMessage(err)}`, { cause: err })
  }
  const out = { code: Buffer.from(result.code ?? ''), map: typeof result.map === 'string' ? result.map : JSON.stringify(result.map) }
  // Kept for the next build: written beside, then renamed, so a cache entry is whole or absent.
  try {
    await mkdir(dir, { recursive: true })
    const tmp = `${cached}.${process.pid}.tmp`
    await writeFile(`${tmp}.map`, out.map)
    await writeFile(tmp, out.code)
    await rename(`${tmp}.map`, `${cached}.map`)
    await rename(tmp, cached)
  } catch {
    // A cache that cannot be written (a read-only project, a full disk) costs the next build the
    // pass again; nothing half-written is left in it.
    await Promise.all([rm(`${cached}.${process.pid}.tmp`, { force: true }), rm(`${cached}.${process.pid}.tmp.map`, { force: true })]).catch(() => {})
  }
  return out
}
