// `outpost keys generate`: an Ed25519 key pair for signing bundles, written as two PEM files. The
// private key is readable by its owner only; an existing pair is never overwritten unless asked.
import { chmodSync, existsSync, renameSync, writeFileSync } from 'node:fs'
import { makeDirs } from '../runtime/make-dirs.js'
import path from 'node:path'
import { ErrorCode, OutpostError } from '../runtime/errors.js'
import { generateSigningKeys } from './signing.js'

/** The file names in the key folder. */
export const PRIVATE_KEY_FILE = 'signing-key.pem'
export const PUBLIC_KEY_FILE = 'signing-key.pub.pem'
/** Where keys go when no folder is given (gitignored .outpost/, beside the device databases). */
export const DEFAULT_KEY_DIR = path.join('.outpost', 'keys')

/** What `writeKeyPair` wrote. */
export interface WrittenKeys {
  privateKey: string
  publicKey: string
  keyId: string
}

/**
 * Generates a key pair into `dir` (made, mode 0700, when missing): the private key with mode 0600,
 * the public key (what devices are provisioned with) with mode 0644.
 * @throws BAD_ARGUMENT when either file exists and `force` is not set, or `dir` is a file
 */
export function writeKeyPair(dir: string, force = false): WrittenKeys {
  const privateKey = path.resolve(dir, PRIVATE_KEY_FILE)
  const publicKey = path.resolve(dir, PUBLIC_KEY_FILE)
  if (!force) {
    const there = [privateKey, publicKey].filter((f) => existsSync(f))
    if (there.length > 0) throw new OutpostError(ErrorCode.BAD_ARGUMENT, `${there.join(' and ')} already exist${there.length === 1 ? 's' : ''}; not overwritten (give --force to replace the key pair: bundles signed with the old key will no longer verify with the new one)`)
  }
  try {
    makeDirs(dir, 0o700)
  } catch (err) {
    throw new OutpostError(ErrorCode.BAD_ARGUMENT, `cannot make the key folder ${dir}: ${(err as Error).message}`)
  }
  const keys = generateSigningKeys()
  // Written to a new file (made 0600) and renamed over: the key is never in a file others may read,
  // even when --force replaces one whose mode was wider.
  const fresh = `${privateKey}.${process.pid}.tmp`
  writeFileSync(fresh, keys.privatePem, { mode: 0o600, flag: 'wx' })
  renameSync(fresh, privateKey)
  writeFileSync(publicKey, keys.publicPem, { mode: 0o644 })
  chmodSync(publicKey, 0o644)
  return { privateKey, publicKey, keyId: keys.keyId }
}
