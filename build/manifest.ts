// A bundle directory's manifest.json: what the bundle is (device, version, build time), what it
// runs on (Node ABI range, the addon's platform and architecture), and the size and sha256 of
// every other file in the directory. Written with a fixed key order, so the same inputs give the
// same bytes; those bytes are what manifest.sig signs (build/signing.ts).
import { createHash } from 'node:crypto'
import { readdir, readFile } from 'node:fs/promises'
import path from 'node:path'
import { ErrorCode, OutpostError } from '../runtime/errors.js'
import { nodeRangeOfAbi, type AddonTarget } from './addon.js'

/** The manifest's own file name, and its signature's. */
export const MANIFEST_FILE = 'manifest.json'
export const SIGNATURE_FILE = 'manifest.sig'
/** The manifest format this code writes and reads. */
export const MANIFEST_FORMAT = 1

/** One file of the bundle. */
export interface ManifestFile {
  /** A file name in the bundle directory (no folders). */
  path: string
  size: number
  /** Lowercase hex. */
  sha256: string
}

/** What manifest.json holds (docs/build.md, "The manifest"). */
export interface Manifest {
  format: typeof MANIFEST_FORMAT
  device: string
  /** The project's version (package.json). */
  version: string
  /** ISO 8601, UTC: --build-time, SOURCE_DATE_EPOCH, or the time of the build. */
  buildTime: string
  /** The file to run: `node <dir>/<entry>`. */
  entry: string
  node: {
    /** The Node versions the bundle runs on (semver range). */
    range: string
    /** process.versions.modules it needs, or null when it carries no addon (any Node in range). */
    abi: number | null
  }
  /** The native addon it carries, or null. */
  addon: (AddonTarget & { file: string; package: string; packageVersion: string }) | null
  /** Every file of the directory but manifest.json and manifest.sig, by path. */
  files: ManifestFile[]
}

/** What goes into a manifest besides the files. */
export type ManifestHead = Omit<Manifest, 'format' | 'files' | 'node'>

/** The Node versions bundles run on when no addon ties them to one major (the esbuild target). */
export const JS_NODE_RANGE = '>=20.0.0'

export const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex')

/** Size and sha256 of every file in `dir` but the manifest and its signature, sorted by name. */
export async function describeFiles(dir: string): Promise<ManifestFile[]> {
  const names = (await readdir(dir, { withFileTypes: true }))
    .filter((e) => e.name !== MANIFEST_FILE && e.name !== SIGNATURE_FILE)
    .map((e) => {
      if (!e.isFile()) throw new OutpostError(ErrorCode.BUILD_FAILED, `${path.join(dir, e.name)} is not a file: a bundle directory holds files only`)
      return e.name
    })
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
  const files: ManifestFile[] = []
  for (const name of names) {
    const bytes = await readFile(path.join(dir, name))
    files.push({ path: name, size: bytes.byteLength, sha256: sha256(bytes) })
  }
  return files
}

/** The manifest of a bundle directory, its keys in their fixed order. */
export function makeManifest(head: ManifestHead, files: ManifestFile[]): Manifest {
  const abi = head.addon?.nodeAbi ?? null
  const range = abi === null ? JS_NODE_RANGE : nodeRangeOfAbi(abi) ?? `ABI ${abi}`
  return {
    format: MANIFEST_FORMAT,
    device: head.device,
    version: head.version,
    buildTime: head.buildTime,
    entry: head.entry,
    node: { range, abi },
    addon: head.addon === null ? null : {
      file: head.addon.file,
      package: head.addon.package,
      packageVersion: head.addon.packageVersion,
      nodeAbi: head.addon.nodeAbi,
      platform: head.addon.platform,
      arch: head.addon.arch,
    },
    files: files.map((f) => ({ path: f.path, size: f.size, sha256: f.sha256 })),
  }
}

/** The exact bytes of manifest.json: JSON, two-space indented, keys in the order above, one newline at the end, UTF-8. */
export const manifestBytes = (manifest: Manifest): Buffer => Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`, 'utf8')

/**
 * The build time to record: `flag` (ISO 8601, or whole seconds since 1970), else SOURCE_DATE_EPOCH
 * (whole seconds), else now.
 * @throws BAD_ARGUMENT naming the flag or the variable when it is not a time
 */
export function resolveBuildTime(flag: string | undefined, env: NodeJS.ProcessEnv = process.env, now: () => number = Date.now): string {
  const parse = (value: string, where: string, isoToo: boolean): string => {
    const ms = /^\d{1,12}$/.test(value) ? Number(value) * 1000 : isoToo && /^\d{4}-\d{2}-\d{2}/.test(value) ? Date.parse(value) : NaN
    if (!Number.isFinite(ms) || ms > 8.64e15) {
      throw new OutpostError(ErrorCode.BAD_ARGUMENT, `${where} "${value}" is not a time; expected ${isoToo ? 'an ISO 8601 time (2025-01-31T12:00:00Z) or ' : ''}whole seconds since 1970-01-01 UTC`)
    }
    return new Date(ms).toISOString()
  }
  if (flag !== undefined) return parse(flag, '--build-time', true)
  const epoch = env.SOURCE_DATE_EPOCH
  if (epoch !== undefined && epoch !== '') return parse(epoch, 'SOURCE_DATE_EPOCH', false)
  return new Date(now()).toISOString()
}
