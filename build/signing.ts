// Ed25519 keys and signatures of bundle manifests (node:crypto). manifest.sig is a small JSON
// file: the algorithm, the id of the signing key, and the signature of manifest.json's exact bytes.
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { ErrorCode, errorMessage, OutpostError } from '../runtime/errors.js'

/** What manifest.sig holds. */
export interface ManifestSignature {
  algorithm: 'ed25519'
  /** keyIdOf the public key that verifies it: which of the trusted keys to use. */
  keyId: string
  /** Base64 of the 64-byte Ed25519 signature of manifest.json's bytes. */
  signature: string
}

/** A key given as a KeyObject or PEM text (or its bytes). */
export type KeyInput = KeyObject | string | Buffer

/** A key's id: the first 16 hex digits of the sha256 of its public key in SPKI DER form. */
export function keyIdOf(key: KeyObject): string {
  const pub = key.type === 'private' ? createPublicKey(key) : key
  return createHash('sha256').update(pub.export({ type: 'spki', format: 'der' })).digest('hex').slice(0, 16)
}

/** A new Ed25519 key pair, both as PEM (PKCS#8 private, SPKI public). */
export function generateSigningKeys(): { privatePem: string; publicPem: string; keyId: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  return {
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    keyId: keyIdOf(publicKey),
  }
}

const isEd25519 = (k: KeyObject): boolean => k.asymmetricKeyType === 'ed25519'

/**
 * The private signing key from `--key` (a PEM file) or OUTPOST_SIGNING_KEY (a PEM file's path,
 * or the PEM text itself, as CI secrets are often given).
 * @throws BAD_ARGUMENT naming where it came from when it is missing, unreadable or not an Ed25519 private key
 */
export function loadSigningKey(value: string, where: string): KeyObject {
  let pem = value
  if (!value.trimStart().startsWith('-----BEGIN')) {
    try {
      pem = readFileSync(value, 'utf8')
    } catch (err) {
      // The reason as the system gave it: a file that is there but cannot be read is no missing file.
      const code = (err as NodeJS.ErrnoException).code
      throw new OutpostError(ErrorCode.BAD_ARGUMENT, code === 'ENOENT' ? `${where} ${value}: no such file (expected a private key from outpost keys generate)` : `${where} ${value}: cannot be read (${code ?? errorMessage(err)})`)
    }
  }
  let key: KeyObject
  try {
    key = createPrivateKey(pem)
  } catch (err) {
    throw new OutpostError(ErrorCode.BAD_ARGUMENT, `${where} is not a private key in PEM form (${errorMessage(err)})`)
  }
  if (!isEd25519(key)) throw new OutpostError(ErrorCode.BAD_ARGUMENT, `${where} is a ${key.asymmetricKeyType ?? 'unknown'} key; bundles are signed with Ed25519 (outpost keys generate)`)
  return key
}

/** A public key to verify with; a private key is taken as its public half. @throws BAD_ARGUMENT when it is not Ed25519 */
export function toPublicKey(input: KeyInput): KeyObject {
  let key: KeyObject
  if (typeof input === 'string' || Buffer.isBuffer(input)) {
    try {
      key = createPublicKey(input)
    } catch (err) {
      throw new OutpostError(ErrorCode.BAD_ARGUMENT, `not a public key in PEM form (${errorMessage(err)})`)
    }
  } else {
    key = input.type === 'private' ? createPublicKey(input) : input
  }
  if (!isEd25519(key)) throw new OutpostError(ErrorCode.BAD_ARGUMENT, `a ${key.asymmetricKeyType ?? 'unknown'} key; bundle signatures are Ed25519`)
  return key
}

/** manifest.sig's bytes for manifest.json's bytes: JSON, two-space indented, one newline at the end. */
export function signManifest(manifest: Buffer, key: KeyObject): Buffer {
  const sig: ManifestSignature = { algorithm: 'ed25519', keyId: keyIdOf(key), signature: sign(null, manifest, key).toString('base64') }
  return Buffer.from(`${JSON.stringify(sig, null, 2)}\n`, 'utf8')
}

/** Reads manifest.sig's bytes. @throws BAD_SIGNATURE when they are not a signature file */
export function parseSignature(bytes: Buffer): ManifestSignature {
  let sig: Partial<ManifestSignature>
  try {
    sig = JSON.parse(bytes.toString('utf8')) as Partial<ManifestSignature>
  } catch {
    throw new OutpostError(ErrorCode.BAD_SIGNATURE, 'manifest.sig is not a signature file (not JSON)')
  }
  if (typeof sig !== 'object' || sig === null || Array.isArray(sig)) throw new OutpostError(ErrorCode.BAD_SIGNATURE, 'manifest.sig is not a signature file (not a JSON object)')
  if (sig.algorithm !== 'ed25519') throw new OutpostError(ErrorCode.BAD_SIGNATURE, `manifest.sig is not an Ed25519 signature file (algorithm ${JSON.stringify(sig.algorithm)})`)
  if (typeof sig.keyId !== 'string' || typeof sig.signature !== 'string') {
    throw new OutpostError(ErrorCode.BAD_SIGNATURE, `manifest.sig is not a signature file (${typeof sig.keyId !== 'string' ? 'keyId' : 'signature'} is not a string)`)
  }
  return sig as ManifestSignature
}

/** True when `sig` is `key`'s signature of `manifest`. */
export const signatureHolds = (manifest: Buffer, sig: ManifestSignature, key: KeyObject): boolean => {
  const raw = Buffer.from(sig.signature, 'base64')
  return raw.byteLength === 64 && verify(null, manifest, key, raw)
}
