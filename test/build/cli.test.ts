// `outpost build` and `outpost keys` as a user runs them (node bin/outpost.js): wrong words and
// options are one line and exit code 2; keys are made 0600 and never overwritten unasked; a
// signed build prints each bundle's size per dependency and a summary table, and verifies; a
// bundle over its budget fails the build with the biggest contributors named.
import { generateKeyPairSync } from 'node:crypto'
import { readFileSync, statSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadSigningKey, verifyBundle } from '../../build/index.js'
import { outpost } from '../helpers/gateway-cli.js'
import { tempDirs } from './build-helpers.js'

const temp = tempDirs('build-cli')
/** No signing key from the developer's environment. */
const NO_KEY = { OUTPOST_SIGNING_KEY: '', SOURCE_DATE_EPOCH: '' }

describe('outpost build and outpost keys, wrongly called', () => {
  const dir = temp()
  writeFileSync(path.join(dir, 'a-file'), 'not a folder')
  const cases: [string[], RegExp][] = [
    [['biuld'], /unknown command "biuld" \(did you mean build\?\)/],
    [['kyes', 'generate'], /unknown command "kyes" \(did you mean keys\?\)/],
    [['build', '--budegt-kb', '3'], /unknown option --budegt-kb \(did you mean --budget-kb\?\)/],
    [['build', '--db', 'x'], /--db is not an option of outpost build/],
    [['build', 'display', '--budget-kb', '300', '--budget-kb', '400', '--unsigned'], /--budget-kb is given twice; give it once/],
    [['build', 'display', '--unsigned', '--unsigned'], /--unsigned is given twice; give it once/],
    [['build', 'thermoo', '--unsigned'], /device "thermoo" is not a device of this project; expected one of display, thermo/],
    [['build', '../devices/thermo', '--unsigned'], /device "\.\.\/devices\/thermo" is not a device/],
    [['build', 'display'], /no signing key: give --key <private\.pem> or OUTPOST_SIGNING_KEY .* or --unsigned/],
    [['build', 'display', '--key', 'k.pem', '--unsigned'], /--key or --unsigned, not both/],
    [['build', 'display', '--key', path.join(dir, 'none.pem')], /--key .*none\.pem: no such file/],
    [['build', 'display', '--unsigned', '--budget-kb', 'big'], /--budget-kb "big" is not accepted/],
    [['build', 'display', '--unsigned', '--gzip-budget-kb', '0'], /--gzip-budget-kb "0" is not accepted/],
    [['build', 'display', '--unsigned', '--platform', 'beos'], /--platform "beos" is not accepted; expected one of linux/],
    [['build', 'display', '--unsigned', '--arch', 'sparc'], /--arch "sparc" is not accepted/],
    [['build', 'display', '--unsigned', '--build-time', 'yesterday'], /--build-time "yesterday" is not a time/],
    [['build', 'display', '--unsigned', '--out='], /--out needs a folder/],
    // Before: exit 1 and ENOTDIR's text, after the build had started.
    [['build', 'display', '--unsigned', '--out', path.join(dir, 'a-file')], /--out .*a-file: it is a file, not a folder/],
    [['build', 'display', '--unsigned', '--out', path.join(dir, 'a-file', 'x')], /--out .*a-file\/x: .*a-file is a file, not a folder/],
    [['build', 'display', '--unsigned', '--unsigned=yes'], /--unsigned takes no value/],
    [['keys'], /outpost keys needs a command; expected generate/],
    [['keys', 'genrate'], /unknown command "genrate"; expected generate/],
    [['keys', 'generate', '--key', 'x'], /--key is not an option of outpost keys/],
    // Under /proc, Node's recursive mkdir looped for ever at full CPU, printing nothing.
    [['keys', 'generate', '--out', '/proc/outpost-keys'], /cannot make the key folder \/proc\/outpost-keys: ENOENT/],
    [['build', 'display', '--key', '/tmp'], /--key \/tmp: cannot be read \(EISDIR\)/],
  ]
  it.each(cases)('outpost %j: one line naming it, exit code 2', async (args, line) => {
    const r = await outpost(args, NO_KEY)
    expect(r.code).toBe(2)
    expect(r.err).toMatch(new RegExp(`^outpost: BAD_ARGUMENT: .*${line.source}`))
    expect(r.err.trim().split('\n')).toHaveLength(1)
  })

  it('a signing key in OUTPOST_SIGNING_KEY that is not one: named as the variable', async () => {
    const r = await outpost(['build', 'display'], { OUTPOST_SIGNING_KEY: path.join(dir, 'nope.pem') })
    expect(r.code).toBe(2)
    expect(r.err).toMatch(/^outpost: BAD_ARGUMENT: OUTPOST_SIGNING_KEY .*nope\.pem: no such file/)
  })
})

describe('outpost keys generate, then outpost build with that key', () => {
  it('makes a 0600 private key, refuses to overwrite without --force; builds, prints sizes and a summary, and the bundle verifies', async () => {
    const keys = path.join(temp(), 'keys')
    const made = await outpost(['keys', 'generate', '--out', keys])
    expect(made.code).toBe(0)
    const keyId = /^key ([0-9a-f]{16})$/m.exec(made.out)?.[1]
    expect(keyId).toBeDefined()
    const priv = path.join(keys, 'signing-key.pem')
    const pub = path.join(keys, 'signing-key.pub.pem')
    expect(statSync(priv).mode & 0o777).toBe(0o600)
    expect(statSync(keys).mode & 0o777).toBe(0o700)
    const pem = readFileSync(priv, 'utf8')
    const again = await outpost(['keys', 'generate', '--out', keys])
    expect(again.code).toBe(2)
    expect(again.err).toMatch(/signing-key\.pem and .*signing-key\.pub\.pem already exist; not overwritten \(give --force/)
    expect(readFileSync(priv, 'utf8')).toBe(pem)

    const out = path.join(temp(), 'bundles')
    const r = await outpost(['build', 'display', '--key', priv, '--out', out, '--build-time', '1735689600'], NO_KEY)
    expect(r.err).toBe('')
    expect(r.code).toBe(0)
    expect(r.out).toMatch(/✔ display: \d+\.\d KB, \d+\.\d KB gzip/)
    expect(r.out).toMatch(/display\.code\.cjs by dependency \(budget \d+ KB minified, \d+ KB gzip\):\ndependency +minified +share\noutpost runtime +\d+\.\d KB +\d+\.\d%\n/)
    const manifest = await verifyBundle(path.join(out, 'display'), readFileSync(pub))
    const js = manifest.files.find((f) => f.path === 'display.code.cjs')!
    expect(r.out).toMatch(new RegExp(`\\ndevice +size +gzip +sha256 +files\\ndisplay +\\d+\\.\\d KB +\\d+\\.\\d KB +${js.sha256.slice(0, 12)} +3\\n`))
    expect(r.out).toContain(`signed with key ${keyId}; built 2025-01-01T00:00:00.000Z`)
    expect(manifest.buildTime).toBe('2025-01-01T00:00:00.000Z')

    const forced = await outpost(['keys', 'generate', '--out', keys, '--force'])
    expect(forced.code).toBe(0)
    expect(readFileSync(priv, 'utf8')).not.toBe(pem)
    expect(statSync(priv).mode & 0o777).toBe(0o600)
  }, 30_000)

  it('a bundle over its budget: the build fails (exit 1), the display marks it, one line names the sizes and biggest contributors', async () => {
    const r = await outpost(['build', 'display', '--unsigned', '--budget-kb', '50', '--out', temp()], NO_KEY)
    expect(r.code).toBe(1)
    // The progress display marks it failed; the reason is the one line after.
    const lines = r.err.trim().split('\n')
    expect(lines).toEqual(['✖ display [FAILED: BUDGET_EXCEEDED]', expect.stringMatching(/^outpost: build display: BUDGET_EXCEEDED: the display bundle is over its size budget: \d+\.\d KB minified \(budget 50 KB\); biggest contributors: outpost runtime \d+\.\d KB, mqtt /)])
  }, 30_000)

  it('takes the key as PEM text in OUTPOST_SIGNING_KEY too (as CI secrets come)', () => {
    const file = path.join(temp(), 'k.pem')
    writeFileSync(file, 'not a key')
    expect(() => loadSigningKey(file, '--key')).toThrow(/--key is not a private key in PEM form/)
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
    expect(() => loadSigningKey(rsa, 'OUTPOST_SIGNING_KEY')).toThrow(/OUTPOST_SIGNING_KEY is a rsa key; bundles are signed with Ed25519/)
    const ed = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
    expect(loadSigningKey(ed, 'OUTPOST_SIGNING_KEY').asymmetricKeyType).toBe('ed25519')
  })
})
