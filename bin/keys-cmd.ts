// `outpost keys generate`: the Ed25519 key pair that signs device bundles (build/keys.ts).
import path from 'node:path'
import type { KeysArgs } from './cli-args.js'
import { loadBuildModule } from './build-cmd.js'

export const KEYS_HELP = `outpost keys — the key pair that signs device bundles

Usage:
  outpost keys generate [--out DIR] [--force]

  Writes an Ed25519 key pair into DIR (default .outpost/keys): signing-key.pem, the private key
  (mode 0600: give it to outpost build --key, keep it off devices), and signing-key.pub.pem, the
  public key devices are provisioned with to verify bundles. An existing pair is not overwritten
  unless --force is given (bundles signed with the old key then no longer verify with the new one).
`

/** Generates the pair; @returns what to print. @throws BAD_ARGUMENT when a key file exists and --force is not given */
export async function runKeysCommand(opts: KeysArgs): Promise<string> {
  const b = await loadBuildModule()
  const written = b.writeKeyPair(opts.outDir ?? b.DEFAULT_KEY_DIR, opts.force)
  const rel = (f: string): string => {
    const r = path.relative(process.cwd(), f)
    return r === '' || r.startsWith('..') ? f : r
  }
  return [
    `key ${written.keyId}`,
    `  private: ${rel(written.privateKey)} (mode 0600; outpost build --key ${rel(written.privateKey)})`,
    `  public:  ${rel(written.publicKey)} (provision devices with this one)`,
  ].join('\n')
}
