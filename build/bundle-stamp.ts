// Whether a device's bundle is current: built from the sources as they are now. Each build
// leaves a stamp beside the bundle directory, `<outDir>/.<device>.inputs.json`: the files esbuild
// read (the device's sources, the runtime's, the packages' and the stubs') and a digest of their
// bytes, with what else decides the output (this project's version, esbuild's and terser's, the Node ABI of
// the addon). The stamp lies outside the bundle directory, so the bundle stays exactly what
// its manifest lists. `outpost device` and the demo run a current bundle as it is and build one
// that is not (run-bundle.ts).
import { createHash } from 'node:crypto'
import { existsSync, readFileSync, statSync } from 'node:fs'
import { writeFile, rename } from 'node:fs/promises'
import path from 'node:path'
import type { Metafile } from 'esbuild'
import { version as esbuildVersion } from 'esbuild'
import { TERSER_VERSION } from './compress.js'
import { hostAddon } from './addon.js'
import { MANIFEST_FILE, type Manifest } from './manifest.js'

/** Build code whose change changes every bundle, relative to the project (as sources or compiled). */
const BUILD_INPUTS = ['build/bundle.ts', 'build/device-stubs.ts', 'build/compress.ts', 'build/await-mappings.ts', 'build/compact-sql.ts', 'package.json']

/** What a stamp holds. */
export interface BundleStamp {
  format: 1
  device: string
  /** The files the bundle was made of, relative to the project, sorted. */
  inputs: string[]
  /** sha256 over the inputs' paths and bytes and the settings (see inputDigest). */
  digest: string
}

/** The stamp's file for device `name`'s bundle in `outDir`. */
export const stampFile = (outDir: string, name: string): string => path.join(outDir, `.${name}.inputs.json`)

/** The files (relative to `root`) a bundle was made of, from esbuild's metafiles' inputs: those on disk. */
export function inputsOf(inputs: Metafile['inputs'], root: string): string[] {
  const files = Object.keys(inputs).filter((f) => !f.includes(':') && existsSync(path.join(root, f)))
  return [...new Set([...files, ...BUILD_INPUTS.filter((f) => existsSync(path.join(root, f)))])].sort()
}

/**
 * sha256 over each input's path and bytes, esbuild's and terser's versions and, for a device with the SQLite
 * addon, the Node ABI and the host addon's size and time (npm rebuild makes a new one).
 * undefined when an input is gone: the sources moved on.
 */
export function inputDigest(root: string, inputs: readonly string[], needsAddon: boolean): string | undefined {
  const hash = createHash('sha256')
  hash.update(`esbuild ${esbuildVersion}\nterser ${TERSER_VERSION}\n`)
  for (const f of inputs) {
    let bytes: Buffer
    try {
      bytes = readFileSync(path.join(root, f))
    } catch {
      return undefined
    }
    hash.update(`${f}\n${bytes.byteLength}\n`).update(bytes)
  }
  if (needsAddon) {
    const addon = hostAddon(root)
    const s = existsSync(addon) ? statSync(addon) : undefined
    hash.update(`addon ${process.versions.modules} ${s?.size ?? 0} ${s?.mtimeMs ?? 0}\n`)
  }
  return hash.digest('hex')
}

/** Writes the stamp of a bundle just built (replacing the file at once, never half-written). */
export async function writeStamp(outDir: string, name: string, root: string, built: Metafile['inputs'], needsAddon: boolean): Promise<void> {
  const inputs = inputsOf(built, root)
  const digest = inputDigest(root, inputs, needsAddon)
  if (digest === undefined) return
  const stamp: BundleStamp = { format: 1, device: name, inputs, digest }
  const file = stampFile(outDir, name)
  const temp = `${file}.${process.pid}.tmp`
  await writeFile(temp, `${JSON.stringify(stamp)}\n`)
  await rename(temp, file)
}

/** The bundle's manifest, or undefined when the directory holds no readable one. */
function readManifest(dir: string): Manifest | undefined {
  try {
    return JSON.parse(readFileSync(path.join(dir, MANIFEST_FILE), 'utf8')) as Manifest
  } catch {
    return undefined
  }
}

/**
 * The entry file of device `name`'s bundle in `outDir` when it was built from the sources as
 * they are now (its stamp's digest matches, its files are there, its addon fits this Node),
 * else undefined.
 */
export function currentBundle(outDir: string, name: string, root: string): string | undefined {
  let stamp: BundleStamp
  try {
    stamp = JSON.parse(readFileSync(stampFile(outDir, name), 'utf8')) as BundleStamp
  } catch {
    return undefined
  }
  if (stamp.format !== 1 || stamp.device !== name || !Array.isArray(stamp.inputs)) return undefined
  const dir = path.join(outDir, name)
  const manifest = readManifest(dir)
  if (manifest === undefined || typeof manifest.entry !== 'string') return undefined
  if (!manifest.files.every((f) => existsSync(path.join(dir, f.path)))) return undefined
  if (manifest.addon !== null && manifest.addon.nodeAbi !== Number(process.versions.modules)) return undefined
  const digest = inputDigest(root, stamp.inputs, manifest.addon !== null)
  return digest === stamp.digest ? path.join(dir, manifest.entry) : undefined
}
