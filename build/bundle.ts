// Bundling one device: `devices/<name>/main.ts` and everything it imports into one minified ES
// module for Node >= 20 (esbuild), with a source map beside it. Bytes depend on the sources only:
// paths in the output are relative to the project, never to where it is written.
import { existsSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { gzipSync } from 'node:zlib'
import { build, type Metafile, type OutputFile } from 'esbuild'
import { ErrorCode, errorMessage, OutpostError } from '../runtime/errors.js'
import type { ContractService } from '../runtime/wire/envelope.js'
import { CONTRACT_TABLE_NAME, contractTableOf, converterLeftOut } from './contract-table.js'
import { deviceStubs } from './device-stubs.js'
import { PROJECT_ROOT } from './project-root.js'

/** What bundling a device produced. */
export interface DeviceBundle {
  /** The bundle, `<outDir>/<name>.mjs`. */
  file: string
  /** Its source map, `<file>.map`. */
  map: string
  /** Size of the JavaScript, bytes (the source map and the addon not counted). */
  bytes: number
  /** Its size gzip-compressed (level 9), bytes. */
  gzipBytes: number
  /** True when the bundle has better-sqlite3 in it: its addon must lie beside it. */
  needsSqlite: boolean
  /** esbuild's account of the inputs, for the size per dependency (build/sizes.ts). */
  metafile: Metafile
  /** Why the bundle carries the contract document's converter (its contracts could not be read at build time); undefined when it does not. */
  converterKept?: string
}

/** The Node version bundles are compiled for; the oldest they run on. */
export const NODE_TARGET = 'node20'

/**
 * CommonJS dependencies (mqtt, pino, better-sqlite3) call require(): the ES module gets one,
 * resolving from the bundle's own place (Node's built-in modules, the addon beside it).
 */
const BANNER = "import { createRequire as __outpostRequire } from 'node:module'; const require = __outpostRequire(import.meta.url);"

/** The entry point of device `name` in the project at `root`. */
export const deviceEntry = (name: string, root: string = PROJECT_ROOT): string => path.join(root, 'devices', name, 'main.ts')

/** The source map with its sources named relative to the project (not to where it is written). */
function portableMap(out: OutputFile, root: string): string {
  const map = JSON.parse(out.text) as { sources: string[]; sourceRoot?: string }
  const dir = path.dirname(out.path)
  // A define's value (the contract table) is a source of its own, named `<define:NAME>`: kept as that.
  map.sources = map.sources.map((s) => /<define:[^>]*>$/.exec(s)?.[0] ?? path.relative(root, path.resolve(dir, s)).split(path.sep).join('/'))
  return `${JSON.stringify(map)}\n`
}

/** esbuild's failure as one line: the first error, where it is, and how many more. */
function buildFailure(name: string, err: unknown): OutpostError {
  const errors = (err as { errors?: { text: string; location?: { file: string; line: number } | null }[] }).errors ?? []
  const first = errors[0]
  if (first === undefined) return new OutpostError(ErrorCode.BUILD_FAILED, `device ${name} could not be bundled: ${String((err as Error).message ?? err)}`, { cause: err })
  const where = first.location ? `${first.location.file}:${first.location.line}: ` : ''
  const more = errors.length > 1 ? ` (and ${errors.length - 1} more)` : ''
  return new OutpostError(ErrorCode.BUILD_FAILED, `device ${name} could not be bundled: ${where}${first.text}${more}`, { cause: err })
}

/**
 * Bundles `devices/<name>/main.ts` of the project at `root` into `<outDir>/<name>.mjs` (minified;
 * error classes keep their names by writing them out, see runtime/errors.ts) and `<name>.mjs.map`. Dependencies are inside;
 * what a device never runs is left out (build/device-stubs.ts); better-sqlite3's addon is not
 * (see build/addon.ts).
 * @throws BUILD_FAILED naming the first compile error, NOT_FOUND for a device that does not exist
 */
export async function bundleDevice(name: string, outDir: string, root: string = PROJECT_ROOT): Promise<DeviceBundle> {
  const entry = deviceEntry(name, root)
  if (!existsSync(entry)) throw new OutpostError(ErrorCode.NOT_FOUND, `no device "${name}": ${path.relative(root, entry)} does not exist`)
  const file = path.join(path.resolve(outDir), `${name}.mjs`)
  // The contract document's parts, made here: the bundle carries them, not the converter. When the
  // device's modules cannot be loaded on this machine (one throws as it loads, or needs hardware
  // this machine lacks), the bundle carries the converter as before, and says why.
  let table: Record<string, ContractService> | undefined
  let converterKept: string | undefined
  try {
    table = await contractTableOf(name, path.relative(root, entry), root)
  } catch (err) {
    converterKept = errorMessage(err)
  }
  const result = await build({
    absWorkingDir: root,
    entryPoints: [path.relative(root, entry)],
    bundle: true,
    platform: 'node',
    target: NODE_TARGET,
    format: 'esm',
    minify: true,
    // No keepNames (it costs ~15 KB): error classes name themselves (`static name`, `name`).
    keepNames: false,
    sourcemap: 'linked',
    // Positions and names only: the sources stay with the project (a device's stack traces still name file:line).
    sourcesContent: false,
    outfile: file,
    metafile: true,
    write: false,
    banner: { js: BANNER },
    ...(table === undefined ? {} : { define: { [CONTRACT_TABLE_NAME]: JSON.stringify(table) } }),
    plugins: table === undefined ? [deviceStubs(root)] : [deviceStubs(root), converterLeftOut(root)],
    logLevel: 'silent',
  }).catch((err: unknown) => {
    throw buildFailure(name, err)
  })
  const js = result.outputFiles.find((o) => o.path === file)!
  const mapOut = result.outputFiles.find((o) => o.path === `${file}.map`)!
  await mkdir(path.dirname(file), { recursive: true })
  await writeFile(file, js.contents)
  await writeFile(`${file}.map`, portableMap(mapOut, root))
  const needsSqlite = Object.keys(result.metafile.inputs).some((i) => /(^|\/)node_modules\/better-sqlite3\//.test(i))
  return { file, map: `${file}.map`, bytes: js.contents.byteLength, gzipBytes: gzipSync(js.contents, { level: 9 }).byteLength, needsSqlite, metafile: result.metafile, converterKept }
}
