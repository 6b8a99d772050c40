// verifyBundle on a signed thermo bundle and on copies of it changed one way each: every change is
// refused with its own code, the untouched bundle verifies, and nothing is run.
import { createPrivateKey } from 'node:crypto'
import { appendFileSync, cpSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { buildDevice, generateSigningKeys, keyIdOf, MANIFEST_FILE, SIGNATURE_FILE, verifyBundle, type BuiltDevice } from '../../build/index.js'
import type { OutpostError } from '../../runtime/errors.js'
import { caught } from '../helpers/caught.js'
import { tempDirs } from './build-helpers.js'

const temp = tempDirs('verify')
/** What verifyBundle rejected with. */
const refused = async (p: Promise<unknown>): Promise<OutpostError> => (await caught(p)) as OutpostError

describe('verifyBundle', () => {
  const keys = generateSigningKeys()
  const other = generateSigningKeys()
  let built: BuiltDevice
  /** A copy of the built bundle, to change. */
  const copy = (): string => {
    const dir = path.join(temp(), 'thermo')
    cpSync(built.dir, dir, { recursive: true })
    return dir
  }

  beforeAll(async () => {
    built = await buildDevice('thermo', { outDir: temp(), signingKey: createPrivateKey(keys.privatePem), buildTime: '2025-01-01T00:00:00.000Z' })
  }, 30_000)

  it('accepts the bundle as built, with the key in a list of trusted keys too; the manifest lists every file', async () => {
    const manifest = await verifyBundle(copy(), keys.publicPem)
    expect(manifest.files.map((f) => f.path)).toEqual(['better_sqlite3.node', 'thermo.cjs', 'thermo.code.cjs', 'thermo.code.cjs.map'])
    expect(manifest.addon).toMatchObject({ file: 'better_sqlite3.node', nodeAbi: Number(process.versions.modules), platform: process.platform, arch: process.arch })
    expect(manifest.node.abi).toBe(Number(process.versions.modules))
    await expect(verifyBundle(built.dir, [other.publicPem, keys.publicPem])).resolves.toEqual(manifest)
    expect(built.keyId).toBe(keys.keyId)
    expect(JSON.parse(readFileSync(path.join(built.dir, SIGNATURE_FILE), 'utf8'))).toMatchObject({ algorithm: 'ed25519', keyId: keys.keyId })
  })

  it('a changed byte in the bundle, the addon or the source map: HASH_MISMATCH naming the file', async () => {
    for (const file of ['thermo.cjs', 'thermo.code.cjs', 'better_sqlite3.node', 'thermo.code.cjs.map']) {
      const dir = copy()
      const bytes = readFileSync(path.join(dir, file))
      const at = bytes.length >> 1
      bytes[at] = bytes[at]! ^ 0x01
      writeFileSync(path.join(dir, file), bytes)
      const err = await refused(verifyBundle(dir, keys.publicPem))
      expect(err).toMatchObject({ code: 'HASH_MISMATCH', details: { file } })
      expect(err.message).toContain(file)
    }
  })

  it('a missing file, an extra file, or a file made longer: HASH_MISMATCH', async () => {
    const missing = copy()
    rmSync(path.join(missing, 'thermo.code.cjs.map'))
    expect(await refused(verifyBundle(missing, keys.publicPem))).toMatchObject({ code: 'HASH_MISMATCH', message: expect.stringContaining('thermo.code.cjs.map is missing') })
    const extra = copy()
    writeFileSync(path.join(extra, 'evil.mjs'), 'process.exit(0)\n')
    expect(await refused(verifyBundle(extra, keys.publicPem))).toMatchObject({ code: 'HASH_MISMATCH', details: { file: 'evil.mjs' } })
    const longer = copy()
    appendFileSync(path.join(longer, 'thermo.cjs'), '\n')
    expect(await refused(verifyBundle(longer, keys.publicPem))).toMatchObject({ code: 'HASH_MISMATCH', details: { file: 'thermo.cjs' } })
  })

  it('a changed manifest (even a hash made to match a changed file) or signature: BAD_SIGNATURE', async () => {
    const dir = copy()
    const manifest = readFileSync(path.join(dir, MANIFEST_FILE), 'utf8')
    writeFileSync(path.join(dir, MANIFEST_FILE), manifest.replace('"version": "', '"version": "9'))
    expect(await refused(verifyBundle(dir, keys.publicPem))).toMatchObject({ code: 'BAD_SIGNATURE' })
    const sigDir = copy()
    const sig = JSON.parse(readFileSync(path.join(sigDir, SIGNATURE_FILE), 'utf8')) as { signature: string }
    const raw = Buffer.from(sig.signature, 'base64')
    raw[0] = raw[0]! ^ 0x80
    writeFileSync(path.join(sigDir, SIGNATURE_FILE), JSON.stringify({ ...sig, signature: raw.toString('base64') }))
    expect(await refused(verifyBundle(sigDir, keys.publicPem))).toMatchObject({ code: 'BAD_SIGNATURE' })
    writeFileSync(path.join(sigDir, SIGNATURE_FILE), 'not json')
    expect(await refused(verifyBundle(sigDir, keys.publicPem))).toMatchObject({ code: 'BAD_SIGNATURE' })
  })

  it('signed by another key: UNKNOWN_KEY naming it; a key id made to match a trusted key: BAD_SIGNATURE; unsigned: UNKNOWN_KEY', async () => {
    const err = await refused(verifyBundle(copy(), other.publicPem))
    expect(err).toMatchObject({ code: 'UNKNOWN_KEY', details: { keyId: keys.keyId } })
    expect(err.message).toContain(other.keyId)
    // Re-signed by an attacker's key that claims the trusted key's id.
    const dir = copy()
    const forged = generateSigningKeys()
    const { signManifest } = await import('../../build/signing.js')
    const sig = JSON.parse(signManifest(readFileSync(path.join(dir, MANIFEST_FILE)), createPrivateKey(forged.privatePem)).toString()) as { keyId: string }
    writeFileSync(path.join(dir, SIGNATURE_FILE), JSON.stringify({ ...sig, keyId: keyIdOf(createPrivateKey(keys.privatePem)) }))
    expect(await refused(verifyBundle(dir, keys.publicPem))).toMatchObject({ code: 'BAD_SIGNATURE' })
    const unsigned = copy()
    rmSync(path.join(unsigned, SIGNATURE_FILE))
    expect(await refused(verifyBundle(unsigned, keys.publicPem))).toMatchObject({ code: 'UNKNOWN_KEY', message: expect.stringContaining('not signed') })
  })

  it('a target with another Node ABI, platform or architecture: ABI_MISMATCH saying both', async () => {
    const dir = copy()
    const abi = Number(process.versions.modules)
    const err = await refused(verifyBundle(dir, keys.publicPem, { nodeAbi: abi + 12 }))
    expect(err).toMatchObject({ code: 'ABI_MISMATCH', details: { bundle: { nodeAbi: abi }, target: { nodeAbi: abi + 12 } } })
    expect(err.message).toContain(`ABI ${abi}`)
    expect(await refused(verifyBundle(dir, keys.publicPem, { arch: process.arch === 'arm64' ? 'x64' : 'arm64' }))).toMatchObject({ code: 'ABI_MISMATCH' })
    expect(await refused(verifyBundle(dir, keys.publicPem, { platform: 'win32' }))).toMatchObject({ code: 'ABI_MISMATCH' })
  })

  it('a folder without a manifest: NOT_FOUND', async () => {
    const dir = copy()
    renameSync(path.join(dir, MANIFEST_FILE), path.join(dir, 'old.json'))
    expect(await refused(verifyBundle(dir, keys.publicPem))).toMatchObject({ code: 'NOT_FOUND' })
  })
})
