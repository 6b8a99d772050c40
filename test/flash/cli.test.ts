// `outpost flash` wrongly called: one line naming what is wrong, exit code 2, no stack trace, and
// nothing written to the device folder; `outpost flash status` of a folder nothing was flashed to.
import { generateKeyPairSync } from 'node:crypto'
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { outpost } from '../helpers/gateway-cli.js'
import { tempDirs } from '../build/build-helpers.js'

const temp = tempDirs('flash-cli')

describe('outpost flash, wrongly called', () => {
  const dev = temp()
  const home = temp()
  // Enough of a bundle directory for the command line to accept (what is in it is checked later).
  const bundle = path.join(home, 'thermo')
  mkdirSync(bundle)
  writeFileSync(path.join(bundle, 'manifest.json'), '{}\n')
  const notBundle = path.join(home, 'empty')
  mkdirSync(notBundle)
  const file = path.join(home, 'file.txt')
  writeFileSync(file, 'x')
  const { privateKey } = generateKeyPairSync('ed25519')
  const priv = path.join(home, 'signing-key.pem')
  writeFileSync(priv, privateKey.export({ type: 'pkcs8', format: 'pem' }))
  const rsa = path.join(home, 'rsa.pub.pem')
  writeFileSync(rsa, generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'pem' }))

  const cases: [string[], RegExp][] = [
    [['flahs', bundle, '--to', dev], /unknown command "flahs" \(did you mean flash\?\)/],
    [['flash'], /outpost flash needs a bundle directory \(outpost build makes them, in dist\/bundles\/<device>\)/],
    [['flash', bundle], /outpost flash needs --to <path>: the device's filesystem/],
    [['flash', bundle, '--tto', dev], /unknown option --tto \(did you mean --to\?\)/],
    [['flash', bundle, '--to'], /--to needs a value/],
    [['flash', bundle, '--to', dev, '--out', dev], /--out is not an option of outpost flash; see outpost flash --help/],
    [['flash', path.join(home, 'nope'), '--to', dev], /bundle directory .*nope does not exist \(outpost build makes them/],
    [['flash', 'stauts', '--to', dev], /bundle directory stauts does not exist \(did you mean outpost flash status\? outpost build makes them/],
    [['flash', notBundle, '--to', dev], /empty is not a bundle directory \(no manifest\.json\)/],
    [['flash', file, '--to', dev], /file\.txt is a file; expected a bundle directory/],
    [['flash', bundle, '--to', path.join(home, 'no-such-mount')], /--to .*no-such-mount does not exist; expected the device's filesystem .* it is not created/],
    [['flash', bundle, '--to', file], /--to .*file\.txt is a file/],
    [['flash', bundle, bundle, '--to', dev], /outpost flash takes one bundle directory/],
    [['flash', bundle, '--to', dev, '--json'], /--json is an option of outpost flash status only/],
    [['flash', bundle, '--to', dev, '--key', path.join(home, 'none.pem')], /--key .*none\.pem: no such file \(expected a public key/],
    [['flash', bundle, '--to', dev, '--key', priv], /--key is a private key; give the public one \(signing-key\.pub\.pem\)/],
    [['flash', bundle, '--to', dev, '--key', rsa], /--key is a rsa key; bundles are signed with Ed25519/],
    [['flash', 'status'], /outpost flash status needs --to <path>/],
    [['flash', 'status', 'x', '--to', dev], /outpost flash status takes no arguments/],
    [['flash', 'status', '--to', dev, '--key', priv], /--key is an option of outpost flash, not of outpost flash status/],
  ]
  it.each(cases)('outpost %j: one line naming it, exit code 2', async (args, line) => {
    const r = await outpost(args)
    expect(r.code).toBe(2)
    expect(r.err).toMatch(new RegExp(`^outpost: BAD_ARGUMENT: .*${line.source}`))
    expect(r.err.trim().split('\n')).toHaveLength(1)
    expect(r.err).not.toMatch(/\n\s+at /)
    expect(readdirSync(dev)).toEqual([])
  })

  it('outpost flash --help and outpost help flash show the flash help; status of a folder nothing was flashed to says so', async () => {
    const help = await outpost(['flash', '--help'])
    expect(help.code).toBe(0)
    expect(help.out).toMatch(/^outpost flash — install a device bundle/)
    expect((await outpost(['help', 'flash'])).out).toBe(help.out)
    expect((await outpost(['--help'])).out).toContain('outpost flash <bundle-dir> --to <path> [--key <public.pem>]')
    const status = await outpost(['flash', 'status', '--to', dev])
    expect(status.code).toBe(0)
    expect(status.out).toContain('nothing flashed yet (no active.json)')
    expect(status.out).toContain('keys:     none (every bundle is refused; flash with --key <public.pem>)')
    expect(readdirSync(dev)).toEqual([])
  })
})
