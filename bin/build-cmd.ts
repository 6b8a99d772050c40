// `outpost build [device...]`: device bundles (build/), with a progress display while several
// devices build (listr2), the size per dependency of each, and a summary table.
import { existsSync, statSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { ErrorCode, errorMessage, isOutpostError, OutpostError } from '../runtime/errors.js'
import type { BuildArgs } from './cli-args.js'
import { sayWhenInterrupted } from './interrupted.js'

export const BUILD_HELP = `outpost build — device bundles: one JavaScript file per device, signed

Usage:
  outpost build [device...] [--out DIR] [--key FILE | --unsigned] [--budget-kb N] [--gzip-budget-kb N]
                [--build-time T] [--addon FILE [--platform P] [--arch A]]

  device...          devices of this project (folders under devices/); default: all of them
  --out DIR          where the bundle directories go, DIR/<device>/ each (default dist/bundles)
  --key FILE         Ed25519 private key (PEM) that signs each manifest (or OUTPOST_SIGNING_KEY: a
                     file, or the PEM text); outpost keys generate makes one
  --unsigned         build without a signature (devices refuse such a bundle); needed without a key
  --budget-kb N      most the bundle's JavaScript may weigh, minified, KB (default 300, or build/budgets.json)
  --gzip-budget-kb N the same, gzip-compressed (default 100)
  --build-time T     the build time recorded in the manifest: ISO 8601 or seconds since 1970
                     (default SOURCE_DATE_EPOCH, else now); pin it for byte-identical builds
  --addon FILE       better-sqlite3's addon for another target (default the host's, from node_modules);
                     --platform (linux, darwin, win32, freebsd) and --arch (x64, arm64, arm, …) when its
                     header does not tell, and checked against it when it does

Each bundle directory holds <device>.cjs (run it with node <dir>/<device>.cjs), the device's code
<device>.code.cjs and its source map, better_sqlite3.node when the device uses SQLite, manifest.json
and manifest.sig (a device whose main.ts awaits at its top level: one <device>.mjs). See docs/build.md.
`

type BuildModule = typeof import('../build/index.js')

/** The package's folder (the one with package.json): above bin/ in the sources, above dist/bin/ compiled. */
function packageRoot(): string {
  const above = fileURLToPath(new URL('..', import.meta.url))
  return existsSync(path.join(above, 'package.json')) ? above : path.dirname(path.resolve(above))
}

/**
 * The build code: compiled beside this file when it is (dist/build/), else its TypeScript sources
 * in the checkout, compiled as they are imported (tsx). Building needs the sources anyway: the
 * devices' own, esbuild, and node_modules to bundle from.
 * @throws BAD_ARGUMENT in an installed copy without sources
 */
export async function loadBuildModule(): Promise<BuildModule> {
  try {
    return await import('../build/index.js')
  } catch (err) {
    if ((err as { code?: string }).code !== 'ERR_MODULE_NOT_FOUND' || !errorMessage(err).includes(`${path.sep}build${path.sep}index.js`)) throw err
  }
  const source = path.join(packageRoot(), 'build', 'index.ts')
  if (!existsSync(source)) throw new OutpostError(ErrorCode.BAD_ARGUMENT, 'outpost build needs the project\'s sources (build/, devices/ and node_modules, as in a checkout); this copy of outpost has none')
  const { tsImport } = (await import('tsx/esm/api')) as { tsImport: (specifier: string, parent: string) => Promise<unknown> }
  return (await tsImport(pathToFileURL(source).href, import.meta.url)) as BuildModule
}

/** A table with a header, columns left-aligned but numbers right-aligned. */
function table(rows: string[][], right: ReadonlySet<number>): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  return rows.map((r) => r.map((c, i) => (right.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n')
}

/** What the steps of a device's build are called on the progress display. */
const STEP_TEXT = { bundle: 'bundling (esbuild, terser)', addon: 'copying the SQLite addon', manifest: 'writing the manifest', done: 'done' } as const

/** A breakdown's rows: each dependency of 1 KB or more, the smaller ones added up in one row. */
function breakdownRows(shares: readonly { name: string; bytes: number }[], total: number, kb: (n: number) => string): string[][] {
  const pct = (n: number): string => `${((100 * n) / total).toFixed(1)}%`
  const big = shares.filter((s) => s.bytes >= 1024)
  const small = shares.filter((s) => s.bytes < 1024)
  const rows = big.map((s) => [s.name, kb(s.bytes), pct(s.bytes)])
  const rest = small.reduce((n, s) => n + s.bytes, 0)
  if (small.length > 0) rows.push([`${small.length} more under 1 KB`, kb(rest), pct(rest)])
  return rows
}

/**
 * Builds the devices, all at once, with a progress display on stdout (a live one on a terminal,
 * a line per step otherwise), then each bundle's size per dependency and a summary table. A
 * device that fails does not stop the others.
 * @returns the exit code: 0 when all were built; 2 when a failure was a wrong argument, else 1
 * @throws BAD_ARGUMENT before anything is built: no key and not --unsigned, a key that is not one, a wrong --build-time
 */
export async function runBuildCommand(opts: BuildArgs, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const b = await loadBuildModule()
  const signingKey = opts.key === undefined ? undefined : b.loadSigningKey(opts.key.value, opts.key.where)
  b.checkSigning({ signingKey, unsigned: opts.unsigned })
  const buildTime = b.resolveBuildTime(opts.buildTime, env)
  const devices = opts.devices.length > 0 ? opts.devices : b.listDevices()
  const outDir = path.resolve(opts.outDir ?? b.defaultOutDir())
  // The folder, or the first of its parents that exists, must be a folder: not a file in the way.
  for (let d = outDir; ; d = path.dirname(d)) {
    if (!existsSync(d)) {
      if (path.dirname(d) === d) break
      continue
    }
    if (!statSync(d).isDirectory()) throw new OutpostError(ErrorCode.BAD_ARGUMENT, `--out ${opts.outDir ?? outDir}: ${d === outDir ? 'it is' : `${d} is`} a file, not a folder`)
    break
  }
  const built = new Map<string, import('../build/index.js').BuiltDevice>()
  const failed = new Map<string, unknown>()
  const { Listr } = await import('listr2')
  const tasks = new Listr(
    devices.map((name) => ({
      title: name,
      task: async (_ctx: unknown, task: { output: string; title: string }) => {
        try {
          // Without a terminal the steps of devices building at once come as lines: each says whose it is.
          const step = (s: keyof typeof STEP_TEXT): void => void (task.output = process.stdout.isTTY === true ? STEP_TEXT[s] : `${name}: ${STEP_TEXT[s]}`)
          const r = await b.buildDevice(name, { outDir, signingKey, unsigned: opts.unsigned, budget: opts.budget, buildTime, addon: opts.addon }, step)
          built.set(name, r)
          task.title = `${name}: ${b.kb(r.bytes)}, ${b.kb(r.gzipBytes)} gzip`
        } catch (err) {
          failed.set(name, err)
          // The display marks the device failed with the code; the message follows, one line on stderr.
          throw new Error(isOutpostError(err) ? err.code : 'failed')
        }
      },
    })),
    { concurrent: true, exitOnError: false, registerSignalListeners: false, rendererOptions: { collapseErrors: false }, fallbackRenderer: 'simple' },
  )
  const quiet = sayWhenInterrupted(`no bundle in ${outDir} was replaced by a half-built one; run the build again`)
  await tasks.run()
  quiet()

  for (const name of devices) {
    const r = built.get(name)
    if (r === undefined) continue
    // Shares of esbuild's output (what its metafile counts): terser's pass after it
    // (build/compress.ts) works on the whole file.
    const rows = [['dependency', 'minified', 'share'], ...breakdownRows(r.breakdown, r.compressed.from, b.kb)]
    console.log(`\n${path.basename(r.code)} by dependency (budget ${r.budget.minifiedKb} KB minified, ${r.budget.gzipKb} KB gzip):\n${table(rows, new Set([1, 2]))}`)
    console.log(`(shares of the code as esbuild minified it, ${b.kb(r.compressed.from)}; terser's pass makes it ${b.kb(r.compressed.to)}, and the bundle with its runner ${b.kb(r.bytes)})`)
    if (r.converterKept !== undefined) console.log(`note: ${name} carries the contract document's converter (about 17 KB): its contracts could not be read at build time (${r.converterKept.split('\n')[0]})`)
  }
  if (built.size > 0) {
    const rows = [['device', 'size', 'gzip', 'sha256', 'files'], ...devices.filter((n) => built.has(n)).map((n) => {
      const r = built.get(n)!
      return [n, b.kb(r.bytes), b.kb(r.gzipBytes), r.sha256.slice(0, 12), String(r.manifest.files.length)]
    })]
    const first = [...built.values()][0]!
    const how = first.keyId === undefined ? 'UNSIGNED (devices refuse these)' : `signed with key ${first.keyId}`
    const shown = path.relative(process.cwd(), outDir)
    console.log(`\n${table(rows, new Set([1, 2, 4]))}\n\nbundles in ${shown === '' ? '.' : shown.startsWith('..') ? outDir : shown}, ${how}; built ${buildTime}`)
  }
  for (const [name, err] of failed) console.error(`outpost: build ${name}: ${isOutpostError(err) ? `${err.code}: ${err.message}` : errorMessage(err)}`)
  if (failed.size === 0) return 0
  return [...failed.values()].every((e) => isOutpostError(e, ErrorCode.BAD_ARGUMENT)) ? 2 : 1
}
