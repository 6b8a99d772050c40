// Builds dist/, what the package's exports and the CLI run: plain JavaScript from the TypeScript
// sources (esbuild, one file in, one file out: no bundling, so dist/ mirrors the source tree),
// then the .d.ts of the public entry points (tsc, tsconfig.build.json, incremental).
//
//   node bin/build.js          JavaScript and declarations (`npm run build`, `prepare`)
//   node bin/build.js --js     JavaScript only, and only when the sources are newer than it
//
// The JavaScript is built from scratch each time in under a second; the declarations take about
// 6 s of CPU when a source changed, a fraction of one when none did. This file is plain JavaScript
// because it runs before anything is compiled. It also tells bin/outpost.js whether dist/ is
// current (distProblem): in a source checkout the CLI rebuilds stale JavaScript by itself.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

/** The package's folder. */
export const ROOT = fileURLToPath(new URL('..', import.meta.url))
/** Where the build goes (gitignored; shipped in the package). */
export const DIST = path.join(ROOT, 'dist')
/** Source folders compiled to dist/<folder>: the library, the gateway, the demo devices, the CLI, device bundling. */
export const SOURCE_DIRS = ['runtime', 'gateway', 'devices', 'bin', 'build']
/**
 * The device launcher as one file that imports Node's built-in modules only (its two runtime
 * modules compiled in): what `outpost flash` copies onto a device (build/flash.ts launcherCode).
 */
export const LAUNCHER_STANDALONE = 'runtime/launcher/launcher.standalone.js'
/** Written after each JavaScript build; its mtime is when that build started. */
const STAMP = path.join(DIST, '.js-built')
/** Besides the sources, what changes the JavaScript output. */
const BUILD_INPUTS = ['tsconfig.json', 'bin/build.js']

/** Every TypeScript source (no .d.ts) and every folder under SOURCE_DIRS, absolute. */
function walkSources() {
  const files = []
  const dirs = []
  const walk = (dir) => {
    dirs.push(dir)
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, entry.name)
      if (entry.isDirectory()) {
        if (entry.name !== 'node_modules' && !entry.name.startsWith('.')) walk(p)
      } else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) {
        files.push(p)
      }
    }
  }
  for (const d of SOURCE_DIRS) if (existsSync(path.join(ROOT, d))) walk(path.join(ROOT, d))
  return { files, dirs }
}

/** True in a checkout (sources beside dist/), false in an installed package (dist/ only). */
export const hasSources = () => existsSync(path.join(ROOT, 'runtime', 'index.ts'))

/**
 * Why dist/'s JavaScript cannot be run as it is, or undefined when it can: missing, or (in a
 * checkout) older than a source file, a source folder (a file added, moved or deleted) or the
 * build's own configuration.
 */
export function distProblem() {
  if (!existsSync(path.join(DIST, 'bin', 'cli.js'))) return 'dist/ is missing'
  if (!hasSources()) return undefined
  if (!existsSync(STAMP)) return 'dist/ was not built by bin/build.js'
  const built = statSync(STAMP).mtimeMs
  const { files, dirs } = walkSources()
  for (const p of [...BUILD_INPUTS.map((f) => path.join(ROOT, f)), ...dirs, ...files]) {
    if (existsSync(p) && statSync(p).mtimeMs > built) return `dist/ is older than ${path.relative(ROOT, p)}`
  }
  return undefined
}

/** Writes a file only if its bytes differ, through a rename, so that a reader never sees half of it. */
function writeAtomically(file, bytes) {
  if (existsSync(file) && Buffer.compare(readFileSync(file), bytes) === 0) return false
  mkdirSync(path.dirname(file), { recursive: true })
  const tmp = `${file}.${process.pid}.tmp`
  writeFileSync(tmp, bytes)
  renameSync(tmp, file)
  return true
}

/** Outputs in dist/<source folder> whose source is gone (a file moved or deleted): removed. */
function pruneOrphans(sources) {
  const expected = new Set([...sources.map((f) => path.relative(ROOT, f).replace(/\.ts$/, '')), LAUNCHER_STANDALONE.replace(/\.js$/, '')])
  const walk = (dir) => {
    if (!existsSync(dir)) return
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, entry.name)
      if (entry.isDirectory()) walk(p)
      else {
        const base = path.relative(DIST, p).replace(/(\.d\.ts|\.js\.map|\.js|\.d\.ts\.map)$/, '')
        if (base !== path.relative(DIST, p) && !expected.has(base)) {
          try {
            unlinkSync(p)
          } catch {
            // Another build removed it first.
          }
        }
      }
    }
  }
  for (const d of SOURCE_DIRS) walk(path.join(DIST, d))
}

/**
 * Compiles every source to dist/ as ES modules for Node 20 (types stripped, imports kept as
 * written). Files whose output did not change are left alone, and the others are replaced whole,
 * so a CLI started meanwhile (or a second build at the same time) reads either version, never half.
 * @returns how many files changed
 * @throws an Error naming esbuild's first error in one line (file:line: message) and how many more
 */
export async function buildJs() {
  const started = Date.now()
  const { files } = walkSources()
  const { build } = await import('esbuild')
  const result = await build({
    absWorkingDir: ROOT,
    entryPoints: files,
    outdir: DIST,
    outbase: ROOT,
    bundle: false,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    sourcemap: 'linked',
    write: false,
    logLevel: 'silent',
  }).catch((err) => {
    const errors = err.errors ?? []
    if (errors.length === 0) throw err
    const where = (e) => (e.location ? `${e.location.file}:${e.location.line}: ` : '')
    const more = errors.length > 1 ? ` (and ${errors.length - 1} more error${errors.length > 2 ? 's' : ''})` : ''
    throw new Error(`the sources do not compile: ${where(errors[0])}${errors[0].text}${more}`)
  })
  const launcherSource = 'runtime/launcher/launcher.ts'
  const launcher = !existsSync(path.join(ROOT, launcherSource)) ? { outputFiles: [] } : await build({
    absWorkingDir: ROOT,
    entryPoints: [launcherSource],
    outfile: path.join(DIST, LAUNCHER_STANDALONE),
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    write: false,
    logLevel: 'silent',
  })
  let changed = 0
  for (const out of [...result.outputFiles, ...launcher.outputFiles]) if (writeAtomically(out.path, out.contents)) changed++
  pruneOrphans(files)
  writeFileSync(STAMP, `${new Date(started).toISOString()}\n`)
  // A source saved while this build ran is newer than the stamp: the next check rebuilds.
  utimesSync(STAMP, started / 1000, started / 1000)
  return changed
}

/**
 * Emits the .d.ts of runtime/ and gateway/ into dist/ (tsc -b tsconfig.build.json: declarations
 * only, incremental, without type checking, which `npm run typecheck` does).
 * @returns tsc's exit status
 */
export function buildTypes() {
  const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc')
  const r = spawnSync(process.execPath, [tsc, '-b', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'inherit' })
  return r.status ?? 1
}

/**
 * Makes dist/'s JavaScript current: nothing when it is, a rebuild when the sources are newer.
 * @returns undefined when dist/ can run, else why not (a sentence for the user)
 */
export async function ensureDist() {
  const problem = distProblem()
  if (problem === undefined) return undefined
  if (!hasSources()) return `${problem}: this copy of outpost was installed without its build; reinstall it`
  try {
    await buildJs()
    return undefined
  } catch (err) {
    const missing = err?.code === 'ERR_MODULE_NOT_FOUND'
    return missing
      ? `${problem} and esbuild is not installed to rebuild it; run npm install (or npm run build) in ${ROOT}`
      : `${problem} and could not be rebuilt: ${err?.message ?? String(err)}`
  }
}

const isMain = process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)
if (isMain) {
  const jsOnly = process.argv.includes('--js')
  const t0 = performance.now()
  try {
    if (!jsOnly || distProblem() !== undefined) {
      const n = await buildJs()
      console.error(`build: dist/ JavaScript, ${n} file${n === 1 ? '' : 's'} changed (${Math.round(performance.now() - t0)} ms)`)
    }
  } catch (err) {
    console.error(`build: ${err?.message ?? String(err)}`)
    process.exit(1)
  }
  if (!jsOnly) {
    const t1 = performance.now()
    const status = buildTypes()
    if (status !== 0) {
      console.error('build: tsc could not emit the declarations (see above)')
      process.exit(status)
    }
    console.error(`build: dist/ declarations (${Math.round(performance.now() - t1)} ms)`)
  }
}
