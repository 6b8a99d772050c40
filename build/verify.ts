// Checking a bundle directory before it is installed: signed by a trusted key, every file as the
// manifest says and nothing else, built for the Node ABI, platform and architecture that will run it.
import { readdir } from 'node:fs/promises'
import path from 'node:path'
import { ErrorCode, errorMessage, OutpostError } from '../runtime/errors.js'
import { MAX_MANIFEST_BYTES, readRegularFile } from '../runtime/launcher/launcher.js'
import { MANIFEST_FILE, MANIFEST_FORMAT, SIGNATURE_FILE, sha256, type Manifest } from './manifest.js'
import { keyIdOf, parseSignature, signatureHolds, toPublicKey, type KeyInput } from './signing.js'

/** What will run the bundle (default: this process). */
export interface VerifyTarget {
  /** process.versions.modules of the Node that will run it. */
  nodeAbi?: number
  /** That Node's version (process.versions.node). */
  nodeVersion?: string
  platform?: string
  arch?: string
}

const fail = (code: ErrorCode, message: string, details?: unknown): OutpostError => new OutpostError(code, message, { details })

/**
 * A file of the bundle, or undefined when it is not there. One that is not a regular file (a
 * FIFO would be waited on for ever, /dev/zero read without end) or is larger than `maxBytes` is
 * refused unread. @throws HASH_MISMATCH for those, BAD_ARGUMENT when it cannot be read
 */
export const readBundleFile = (file: string, maxBytes: number): Buffer | undefined => {
  try {
    return readRegularFile(file, maxBytes)
  } catch (err) {
    const code = (err as { code?: string }).code
    if (code === 'ENOENT') return undefined
    const name = path.basename(file)
    if (code === 'ENOTREG' || code === 'EFBIG') throw fail(ErrorCode.HASH_MISMATCH, `${name} in ${path.dirname(file)} is not the file the manifest lists: ${errorMessage(err)}`, { file: name })
    throw fail(ErrorCode.BAD_ARGUMENT, `cannot read ${name} in ${path.dirname(file)} (${errorMessage(err)})`, { file: name })
  }
}

/** A file name a manifest may list: one name in the directory, no folders, nothing hidden above it. */
const isPlainName = (name: unknown): name is string => typeof name === 'string' && name !== '' && name !== '.' && name !== '..' && !/[\\/\0]/.test(name)

/** The manifest's shape, checked after its signature holds (a signed manifest of another format is refused all the same). */
function checkShape(value: unknown): Manifest {
  const m = value as Partial<Manifest> | null
  const ok = m !== null && typeof m === 'object' && m.format === MANIFEST_FORMAT && typeof m.device === 'string' && typeof m.entry === 'string' &&
    Array.isArray(m.files) && m.files.every((f) => isPlainName(f?.path) && Number.isSafeInteger(f.size) && typeof f.sha256 === 'string') &&
    typeof m.node === 'object' && m.node !== null && (m.addon === null || (typeof m.addon === 'object' && isPlainName(m.addon.file)))
  if (!ok) throw fail(ErrorCode.HASH_MISMATCH, `${MANIFEST_FILE} is not a bundle manifest of format ${MANIFEST_FORMAT}`)
  return m as Manifest
}

/**
 * Verifies the bundle in `dir` against the trusted public key(s), in this order: the signature of
 * manifest.json's bytes (manifest.sig), then each file's size and sha256 (and that there is no
 * other file), then the target. Nothing in the directory is run or changed.
 * @returns the manifest, once all of it holds
 * @throws NOT_FOUND when there is no manifest.json;
 *   UNKNOWN_KEY when the bundle is unsigned or signed by a key not among `trusted`;
 *   BAD_SIGNATURE when the signature does not verify with the key it names (the manifest was changed, or the signature);
 *   HASH_MISMATCH naming the first file that is missing, extra, or of another size or sha256 (or the entry or addon not listed);
 *   ABI_MISMATCH when the addon is for another Node ABI, platform or architecture than `target`, or the Node is too old
 */
export async function verifyBundle(dir: string, trusted: KeyInput | readonly KeyInput[], target: VerifyTarget = {}): Promise<Manifest> {
  const keys = (Array.isArray(trusted) ? trusted : [trusted as KeyInput]).map(toPublicKey)
  const manifestBytes = readBundleFile(path.join(dir, MANIFEST_FILE), MAX_MANIFEST_BYTES)
  if (manifestBytes === undefined) throw fail(ErrorCode.NOT_FOUND, `${dir} has no ${MANIFEST_FILE}: not a bundle directory`)
  const sigBytes = readBundleFile(path.join(dir, SIGNATURE_FILE), MAX_MANIFEST_BYTES)
  if (sigBytes === undefined) throw fail(ErrorCode.UNKNOWN_KEY, `the bundle in ${dir} is not signed (no ${SIGNATURE_FILE}); it was built with --unsigned`)
  const sig = parseSignature(sigBytes)
  const key = keys.find((k) => keyIdOf(k) === sig.keyId)
  if (key === undefined) {
    throw fail(ErrorCode.UNKNOWN_KEY, `the bundle in ${dir} is signed by key ${sig.keyId}, which is not trusted here (trusted: ${keys.map(keyIdOf).join(', ')})`, { keyId: sig.keyId })
  }
  if (!signatureHolds(manifestBytes, sig, key)) {
    throw fail(ErrorCode.BAD_SIGNATURE, `the signature of ${MANIFEST_FILE} in ${dir} does not verify with key ${sig.keyId}: the manifest or its signature was changed`, { keyId: sig.keyId })
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(manifestBytes.toString('utf8'))
  } catch {
    throw fail(ErrorCode.HASH_MISMATCH, `${MANIFEST_FILE} in ${dir} is not JSON`)
  }
  const manifest = checkShape(parsed)
  await checkFiles(dir, manifest)
  checkTarget(manifest, target)
  return manifest
}

/** Every listed file as listed; no file that is not listed; the entry and the addon among them. */
async function checkFiles(dir: string, manifest: Manifest): Promise<void> {
  const listed = new Set(manifest.files.map((f) => f.path))
  for (const needed of [manifest.entry, ...(manifest.addon === null ? [] : [manifest.addon.file])]) {
    if (!listed.has(needed)) throw fail(ErrorCode.HASH_MISMATCH, `${needed} is not in the manifest's files`, { file: needed })
  }
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.name === MANIFEST_FILE || entry.name === SIGNATURE_FILE || listed.has(entry.name)) continue
    throw fail(ErrorCode.HASH_MISMATCH, `${entry.name} in ${dir} is not in the manifest`, { file: entry.name })
  }
  for (const f of manifest.files) {
    // Larger than listed: refused unread.
    const bytes = readBundleFile(path.join(dir, f.path), f.size)
    if (bytes === undefined) throw fail(ErrorCode.HASH_MISMATCH, `${f.path} is missing from ${dir}`, { file: f.path })
    const actual = sha256(bytes)
    if (bytes.byteLength !== f.size || actual !== f.sha256) {
      throw fail(ErrorCode.HASH_MISMATCH, `${f.path} in ${dir} is not the file the manifest lists (${bytes.byteLength} bytes, sha256 ${actual.slice(0, 12)}…; expected ${f.size} bytes, ${f.sha256.slice(0, 12)}…)`, {
        file: f.path, expected: { size: f.size, sha256: f.sha256 }, actual: { size: bytes.byteLength, sha256: actual },
      })
    }
  }
}

/** The addon's ABI, platform and architecture against the target's; without one, a Node new enough for the JavaScript. */
function checkTarget(manifest: Manifest, target: VerifyTarget): void {
  const abi = target.nodeAbi ?? Number(process.versions.modules)
  const platform = target.platform ?? process.platform
  const arch = target.arch ?? process.arch
  const major = Number((target.nodeVersion ?? process.versions.node).split('.')[0])
  const addon = manifest.addon
  if (addon !== null) {
    if (addon.nodeAbi !== abi || addon.platform !== platform || addon.arch !== arch) {
      throw fail(ErrorCode.ABI_MISMATCH, `the bundle's addon is built for Node ABI ${addon.nodeAbi} (Node ${manifest.node.range}) on ${addon.platform}-${addon.arch}; this target is ABI ${abi} on ${platform}-${arch}`, {
        bundle: { nodeAbi: addon.nodeAbi, platform: addon.platform, arch: addon.arch }, target: { nodeAbi: abi, platform, arch },
      })
    }
  } else if (!(major >= 20)) {
    throw fail(ErrorCode.ABI_MISMATCH, `the bundle needs Node ${manifest.node.range}; this target has Node ${major}`, { range: manifest.node.range, nodeMajor: major })
  }
}
