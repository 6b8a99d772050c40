// Building a device's bundle directory, `<out>/<device>/`: the bundle and its source map, the
// SQLite addon when the device uses it, manifest.json and manifest.sig. It is made beside the
// target and put in its place only when complete, so a failed build leaves the last good one.
import type { KeyObject } from 'node:crypto'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { mkdir, rename, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { ErrorCode, OutpostError } from '../runtime/errors.js'
import { running } from '../runtime/launcher/launcher.js'
import { makeDirs } from '../runtime/make-dirs.js'
import { ADDON_FILE, resolveAddon, type AddonChoice, type ResolvedAddon } from './addon.js'
import { bundleDevice } from './bundle.js'
import { writeStamp } from './bundle-stamp.js'
import { describeFiles, makeManifest, MANIFEST_FILE, manifestBytes, sha256, SIGNATURE_FILE, type Manifest } from './manifest.js'
import { PROJECT_ROOT } from './project-root.js'
import { keyIdOf, signManifest } from './signing.js'
import { budgetFor, checkBudget, sizeBreakdown, type SizeBudget, type SizeShare } from './sizes.js'

/** How to build. */
export interface BuildOptions {
  /** The project (default: the one this code is in). */
  root?: string
  /** Where the bundle directories go (default `<root>/dist/bundles`). */
  outDir?: string
  /** The Ed25519 private key that signs the manifests; required unless `unsigned`. */
  signingKey?: KeyObject
  /** Build without manifest.sig (only for trying things out: devices refuse such bundles). */
  unsigned?: boolean
  /** Over build/budgets.json and the default (build/sizes.ts). */
  budget?: Partial<SizeBudget>
  /** ISO 8601 build time to record (see resolveBuildTime); default now. */
  buildTime?: string
  /** The addon to carry (default the host's). */
  addon?: AddonChoice
}

/** What a device's build went through, for a progress display. */
export type BuildStep = 'bundle' | 'addon' | 'manifest' | 'done'

/** A built bundle directory. */
/** About what the contract document's converter adds to a bundle (build/contract-table.ts), KB. */
const CONVERTER_KB = { minified: 18, gzip: 6 }

export interface BuiltDevice {
  device: string
  /** The bundle directory. */
  dir: string
  /** The file to run. */
  entry: string
  /** The device's code, which the entry runs (the entry itself for a device that awaits at its top level). */
  code: string
  bytes: number
  gzipBytes: number
  /** Of the device's code (`<device>.cjs`, which the entry runs). */
  sha256: string
  breakdown: SizeShare[]
  /** The code's size as esbuild wrote it (the breakdown's shares are of that) and after terser's pass, bytes. */
  compressed: { from: number; to: number }
  budget: SizeBudget
  manifest: Manifest
  /** The signing key's id, or undefined for an unsigned bundle. */
  keyId?: string
  /** Why the bundle carries the contract document's converter (build/contract-table.ts could not read its contracts). */
  converterKept?: string
}

/** The devices of the project: folders under devices/ with a main.ts, sorted. */
export function listDevices(root: string = PROJECT_ROOT): string[] {
  const dir = path.join(root, 'devices')
  return readdirSync(dir).filter((n) => /^[a-z0-9][a-z0-9-]*$/.test(n) && existsSync(path.join(dir, n, 'main.ts'))).sort()
}

/** The default place of bundle directories. */
export const defaultOutDir = (root: string = PROJECT_ROOT): string => path.join(root, 'dist', 'bundles')

const packageVersion = (dir: string): string => (JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { version: string }).version

/**
 * A directory the build may replace: missing, empty, or a bundle directory of an earlier build
 * (it has a manifest.json). @throws BAD_ARGUMENT for anything else: --out must not point at a folder of other things
 */
function checkReplaceable(dir: string): void {
  if (!existsSync(dir)) return
  if (!statSync(dir).isDirectory()) throw new OutpostError(ErrorCode.BAD_ARGUMENT, `${dir} is a file; a bundle directory is made there`)
  const names = readdirSync(dir)
  if (names.length > 0 && !names.includes(MANIFEST_FILE)) throw new OutpostError(ErrorCode.BAD_ARGUMENT, `${dir} is not a bundle directory (no ${MANIFEST_FILE}) and not empty; not replaced (choose another --out)`)
}

/** Refuses, before any work, to make a bundle nobody can verify unless that is asked for. */
export function checkSigning(opts: Pick<BuildOptions, 'signingKey' | 'unsigned'>): void {
  if (opts.signingKey === undefined && opts.unsigned !== true) {
    throw new OutpostError(ErrorCode.BAD_ARGUMENT, 'no signing key: give --key <private.pem> or OUTPOST_SIGNING_KEY (outpost keys generate makes a pair), or --unsigned for a bundle devices will refuse')
  }
}

/** Removes the staging folders of builds of `name` into `outDir` whose process is gone (stopped by Ctrl-C, killed). */
async function removeAbandoned(outDir: string, name: string): Promise<void> {
  const prefix = `.${name}.building-`
  let names: string[]
  try {
    names = readdirSync(outDir).filter((n) => n.startsWith(prefix) && /^\d+$/.test(n.slice(prefix.length)))
  } catch {
    return
  }
  for (const n of names) if (!running(Number(n.slice(prefix.length)))) await rm(path.join(outDir, n), { recursive: true, force: true }).catch(() => {})
}

/**
 * Builds device `name` into `<outDir>/<name>/`, replacing an earlier build there.
 * @throws BAD_ARGUMENT (no signing key, a wrong --addon, an --out that is not a bundle directory),
 *   NOT_FOUND (no such device), BUILD_FAILED (does not compile), BUDGET_EXCEEDED (the earlier build is kept)
 */
export async function buildDevice(name: string, opts: BuildOptions = {}, onStep: (step: BuildStep) => void = () => {}): Promise<BuiltDevice> {
  checkSigning(opts)
  const root = opts.root ?? PROJECT_ROOT
  const outDir = path.resolve(opts.outDir ?? defaultOutDir(root))
  const target = path.join(outDir, name)
  checkReplaceable(target)
  const staging = path.join(outDir, `.${name}.building-${process.pid}`)
  await rm(staging, { recursive: true, force: true })
  await removeAbandoned(outDir, name)
  makeDirs(staging)
  try {
    onStep('bundle')
    const bundle = await bundleDevice(name, staging, root)
    const breakdown = sizeBreakdown(bundle.metafile)
    const base = budgetFor(name, root, opts.budget)
    // A bundle that had to keep the contract document's converter (its contracts could not be read
    // here) is allowed what the converter weighs, so that a module failing on this machine fails
    // on the device, where it is reported, not the build. The budget reported is the one checked.
    const budget = bundle.converterKept === undefined ? base : { ...base, minifiedKb: base.minifiedKb + CONVERTER_KB.minified, gzipKb: base.gzipKb + CONVERTER_KB.gzip }
    checkBudget(name, bundle, budget, breakdown)
    let addon: ResolvedAddon | undefined
    if (bundle.needsSqlite) {
      onStep('addon')
      addon = resolveAddon(opts.addon ?? {}, root)
      await writeFile(path.join(staging, ADDON_FILE), addon.bytes, { mode: 0o755 })
    }
    onStep('manifest')
    const manifest = makeManifest(
      {
        device: name,
        version: packageVersion(root),
        buildTime: opts.buildTime ?? new Date().toISOString(),
        entry: path.basename(bundle.file),
        addon: addon === undefined ? null : {
          file: ADDON_FILE,
          package: 'better-sqlite3',
          packageVersion: packageVersion(path.join(root, 'node_modules', 'better-sqlite3')),
          nodeAbi: addon.nodeAbi,
          platform: addon.platform,
          arch: addon.arch,
        },
      },
      await describeFiles(staging),
    )
    const bytes = manifestBytes(manifest)
    await writeFile(path.join(staging, MANIFEST_FILE), bytes)
    if (opts.signingKey !== undefined) await writeFile(path.join(staging, SIGNATURE_FILE), signManifest(bytes, opts.signingKey))
    checkReplaceable(target)
    await rm(target, { recursive: true, force: true })
    await rename(staging, target)
    await writeStamp(outDir, name, root, bundle.inputs, addon !== undefined)
    onStep('done')
    const js = manifest.files.find((f) => f.path === path.basename(bundle.code))!
    return {
      device: name,
      dir: target,
      entry: path.join(target, manifest.entry),
      code: path.join(target, path.basename(bundle.code)),
      bytes: bundle.bytes,
      gzipBytes: bundle.gzipBytes,
      compressed: bundle.compressed,
      sha256: js.sha256,
      breakdown,
      budget,
      manifest,
      keyId: opts.signingKey === undefined ? undefined : keyIdOf(opts.signingKey),
      ...(bundle.converterKept === undefined ? {} : { converterKept: bundle.converterKept }),
    }
  } finally {
    await rm(staging, { recursive: true, force: true })
  }
}

/** sha256 of a file's bytes (for a summary of files not built here). */
export const fileSha256 = (file: string): string => sha256(readFileSync(file))
