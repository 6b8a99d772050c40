// Bundling one device: `devices/<name>/main.ts` and everything it imports into one minified
// CommonJS file for Node >= 20 (esbuild), with a source map beside it, and the small CommonJS entry
// that runs it (from a V8 code cache: runtime/launcher/bundle-runner.ts). Bytes depend on the sources only:
// paths in the output are relative to the project, never to where it is written.
import { existsSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { gzipSync } from 'node:zlib'
import { build, type BuildOptions, type Metafile } from 'esbuild'
import { ErrorCode, errorMessage, OutpostError } from '../runtime/errors.js'
import { CODE_STARTED } from '../runtime/launcher/code-cache.js'
import type { ContractService } from '../runtime/wire/envelope.js'
import { compactSqlPlugin } from './compact-sql.js'
import { compressCode } from './compress.js'
import { esbuildErrorLine } from './esbuild-errors.js'
import { CONTRACT_TABLE_NAME, contractTableOf, converterLeftOut } from './contract-table.js'
import { DEVICE_STUBS, deviceStubs } from './device-stubs.js'
import { sha256 } from './manifest.js'
import { PROJECT_ROOT } from './project-root.js'

/** What bundling a device produced. */
export interface DeviceBundle {
  /** The file to run, `<outDir>/<name>.cjs`: the runner of the device's code (runtime/launcher/bundle-runner.ts); `<outDir>/<name>.mjs` for an entry that awaits at its top level. */
  file: string
  /** The device's code, `<outDir>/<name>.code.cjs`; `file` itself for an entry that awaits at its top level (one ES module, no runner). */
  code: string
  /** Its source map, `<code>.map`. */
  map: string
  /** Size of the JavaScript (code and runner; the source map and the addon not counted), bytes. */
  bytes: number
  /** The code's size as esbuild wrote it and after terser's pass (build/compress.ts), bytes. */
  compressed: { from: number; to: number }
  /** Its size gzip-compressed (level 9, each file), bytes. */
  gzipBytes: number
  /** True when the bundle has better-sqlite3 in it: its addon must lie beside it. */
  needsSqlite: boolean
  /** esbuild's account of the code's inputs, for the size per dependency (build/sizes.ts). */
  metafile: Metafile
  /** The files the code and the runner were made of (esbuild's inputs of both), for the bundle's stamp. */
  inputs: Metafile['inputs']
  /** Why the bundle carries the contract document's converter (its contracts could not be read at build time); undefined when it does not. */
  converterKept?: string
}

/** The Node version bundles are compiled for; the oldest they run on. */
export const NODE_TARGET = 'node20'

/**
 * The code is CommonJS (its dependencies call require(), and the runner compiles it through
 * node:vm, which can take a V8 code cache). Modules that read `import.meta.url` (the SQLite addon
 * beside the bundle) read the code file's URL, made at the first read (0.2 ms of the start, when
 * the banner made it: most bundles read it once, when the database opens).
 */
const CODE_URL = '__outpostCode.url'
const BANNER = `globalThis[Symbol.for(${JSON.stringify(CODE_STARTED.description)})] = true; var __outpostCode = { get url() { return this.u ??= require('node:url').pathToFileURL(__filename).href } };`

/** CommonJS dependencies call require(): an ES module bundle gets one, resolving from the bundle's own place. */
const ESM_BANNER = "import { createRequire as __outpostRequire } from 'node:module'; const require = __outpostRequire(import.meta.url);"

/** True when esbuild refused CommonJS output only because the entry awaits at its top level. */
const awaitsAtTopLevel = (err: unknown): boolean => {
  const errors = (err as { errors?: { text: string }[] }).errors ?? []
  return errors.length > 0 && errors.every((e) => /^Top-level await is currently not supported with the "cjs" output format/.test(e.text))
}

/** The runner's source: the entry of every bundle, compiled with the code's name and sha256 in it. */
const RUNNER = 'runtime/launcher/bundle-runner.ts'

/** The entry point of device `name` in the project at `root`. */
export const deviceEntry = (name: string, root: string = PROJECT_ROOT): string => path.join(root, 'devices', name, 'main.ts')

/** The source map `text` of the file at `file` with its sources named relative to the project (not to where it is written). */
function portableMap(text: string, file: string, root: string): string {
  const map = JSON.parse(text) as { sources: string[]; sourceRoot?: string }
  const dir = path.dirname(file)
  // A define's value (the contract table) is a source of its own, named `<define:NAME>`: kept as that.
  map.sources = map.sources.map((s) => /<define:[^>]*>$/.exec(s)?.[0] ?? path.relative(root, path.resolve(dir, s)).split(path.sep).join('/'))
  // A dependency's file a stand-in replaced (build/device-stubs.ts) is loaded under the file's own
  // name; its code is the stand-in's, and the map names the stand-in, whose lines it maps.
  map.sources = map.sources.map((s) => {
    const stub = DEVICE_STUBS.find((d) => d.file === true && s.endsWith(`node_modules/${d.module}`))
    return stub === undefined ? s : `build/stubs/${stub.with}`
  })
  return `${JSON.stringify(map)}\n`
}

/** esbuild's failure as one line: the first error, where it is, and how many more. */
function buildFailure(name: string, err: unknown): OutpostError {
  return new OutpostError(ErrorCode.BUILD_FAILED, `device ${name} could not be bundled: ${esbuildErrorLine(err) ?? String((err as Error).message ?? err)}`, { cause: err })
}

/**
 * Bundles `devices/<name>/main.ts` of the project at `root` into `<outDir>/<name>.code.cjs` (minified;
 * error classes keep their names by writing them out, see runtime/errors.ts) and `<name>.code.cjs.map`,
 * run by `<outDir>/<name>.cjs` (the bundle's entry). Dependencies are inside;
 * what a device never runs is left out (build/device-stubs.ts); better-sqlite3's addon is not
 * (see build/addon.ts).
 * @throws BUILD_FAILED naming the first compile error, NOT_FOUND for a device that does not exist
 */
export async function bundleDevice(name: string, outDir: string, root: string = PROJECT_ROOT): Promise<DeviceBundle> {
  const entry = deviceEntry(name, root)
  if (!existsSync(entry)) throw new OutpostError(ErrorCode.NOT_FOUND, `no device "${name}": ${path.relative(root, entry)} does not exist`)
  const out = path.resolve(outDir)
  let file = path.join(out, `${name}.cjs`)
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
  // The device's code as CommonJS, run by the runner; an entry that awaits at its top level cannot
  // be CommonJS, and is bundled as one ES module, the bundle's entry itself (without a code cache).
  const options = (format: 'cjs' | 'esm', outfile: string) => ({
    absWorkingDir: root,
    entryPoints: [path.relative(root, entry)],
    bundle: true,
    platform: 'node' as const,
    target: NODE_TARGET,
    format,
    minify: true,
    // No keepNames (it costs ~15 KB): error classes name themselves (`static name`, `name`).
    keepNames: false,
    sourcemap: 'linked' as const,
    // Positions and names only: the sources stay with the project (a device's stack traces still name file:line).
    sourcesContent: false,
    outfile,
    metafile: true as const,
    write: false as const,
    banner: { js: format === 'cjs' ? BANNER : ESM_BANNER },
    define: { ...(format === 'cjs' ? { 'import.meta.url': CODE_URL } : {}), ...(table === undefined ? {} : { [CONTRACT_TABLE_NAME]: JSON.stringify(table) }) },
    plugins: [deviceStubs(root), compactSqlPlugin(), ...(table === undefined ? [] : [converterLeftOut(root)])],
    logLevel: 'silent' as const,
  }) satisfies BuildOptions
  let code = path.join(out, `${name}.code.cjs`)
  const result = await build(options('cjs', code)).catch(async (err: unknown) => {
    if (!awaitsAtTopLevel(err)) throw buildFailure(name, err)
    code = file = path.join(out, `${name}.mjs`)
    return build(options('esm', code)).catch((again: unknown) => {
      throw buildFailure(name, again)
    })
  })
  const mapOut = result.outputFiles.find((o) => o.path === `${code}.map`)!
  const esbuilt = result.outputFiles.find((o) => o.path === code)!
  // esbuild's output, compressed once more (build/compress.ts), its map's sources named from the
  // project first (so that where the bundle is written changes neither the result nor its cache key).
  const js = await compressCode(name, esbuilt.text, portableMap(mapOut.text, mapOut.path, root), path.basename(code), root, code === file ? 'esm' : 'cjs')
  const runner = code === file ? undefined : await build({
    absWorkingDir: root,
    entryPoints: [RUNNER],
    bundle: true,
    platform: 'node',
    target: NODE_TARGET,
    // CommonJS: an ES module entry would start Node's ES module loader (5-7 ms of the thermo's start).
    format: 'cjs',
    minify: true,
    outfile: file,
    metafile: true,
    write: false,
    define: { __OUTPOST_CODE_FILE__: JSON.stringify(path.basename(code)), __OUTPOST_CODE_SHA256__: JSON.stringify(sha256(js.code)) },
    logLevel: 'silent',
  }).catch((err: unknown) => {
    throw buildFailure(name, err)
  })
  const run = runner?.outputFiles[0]?.contents ?? new Uint8Array(0)
  await mkdir(path.dirname(file), { recursive: true })
  await writeFile(code, js.code)
  await writeFile(`${code}.map`, js.map)
  if (runner !== undefined) await writeFile(file, run)
  const needsSqlite = Object.keys(result.metafile.inputs).some((i) => /(^|\/)node_modules\/better-sqlite3\//.test(i))
  return {
    file,
    code,
    map: `${code}.map`,
    bytes: js.code.byteLength + run.byteLength,
    compressed: { from: esbuilt.contents.byteLength, to: js.code.byteLength },
    gzipBytes: gzipSync(js.code, { level: 9 }).byteLength + (run.byteLength === 0 ? 0 : gzipSync(run, { level: 9 }).byteLength),
    needsSqlite,
    metafile: result.metafile,
    inputs: { ...result.metafile.inputs, ...runner?.metafile.inputs },
    converterKept,
  }
}
