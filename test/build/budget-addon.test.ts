// Size budgets (a bundle over its budget fails its build, naming the biggest contributors, and the
// earlier build is kept), and the addon a bundle carries for another target (what it is built for
// is read from the file; a target the file contradicts is refused).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { abiOfAddon, budgetFor, buildDevice, headerTarget, hostAddon, kb, PROJECT_ROOT, resolveAddon, verifyBundle, generateSigningKeys } from '../../build/index.js'
import { createPrivateKey } from 'node:crypto'
import type { OutpostError } from '../../runtime/errors.js'
import { caught } from '../helpers/caught.js'
import { tempDirs } from './build-helpers.js'

const temp = tempDirs('budget')
const refused = async (p: Promise<unknown>): Promise<OutpostError> => (await caught(p)) as OutpostError

/** The first bytes of an ELF shared object for `machine` (e_machine), with a Node ABI symbol in it. */
function fakeElf(machine: number, abi: number): Buffer {
  const header = Buffer.alloc(64)
  header.writeUInt32BE(0x7f454c46, 0)
  header[4] = 2 // 64-bit
  header[5] = 1 // little-endian
  header[7] = 0 // System V (Linux)
  header.writeUInt16LE(machine, 18)
  return Buffer.concat([header, Buffer.from(`\0node_register_module_v${abi}\0`)])
}

describe('size budgets', () => {
  it('a bundle over its budget fails with BUDGET_EXCEEDED naming sizes and the biggest contributors; the last good build stays', async () => {
    const out = temp()
    const good = await buildDevice('display', { outDir: out, unsigned: true, budget: { minifiedKb: 2_000, gzipKb: 2_000 } })
    const before = readFileSync(path.join(good.dir, 'manifest.json'))
    const err = await refused(buildDevice('display', { outDir: out, unsigned: true, budget: { minifiedKb: 50 } }))
    expect(err.code).toBe('BUDGET_EXCEEDED')
    expect(err.message).toContain(`${kb(good.bytes)} minified (budget 50 KB)`)
    expect(err.message).toMatch(/biggest contributors: outpost runtime \d+\.\d KB, /)
    expect(err.message).not.toContain('gzip (budget')
    expect(readFileSync(path.join(good.dir, 'manifest.json')).equals(before)).toBe(true)
    const gz = await refused(buildDevice('display', { outDir: out, unsigned: true, budget: { minifiedKb: 2_000, gzipKb: 10 } }))
    expect(gz.message).toContain(`${kb(good.gzipBytes)} gzip (budget 10 KB)`)
    // The breakdown adds up to the bundle, less esbuild's own glue.
    const sum = good.breakdown.reduce((n, s) => n + s.bytes, 0)
    expect(sum).toBeLessThanOrEqual(good.bytes)
    expect(sum).toBeGreaterThan(good.bytes * 0.9)
  }, 30_000)

  it('the budget is the command line over build/budgets.json over 300/100 KB, each value on its own', () => {
    const root = temp()
    expect(budgetFor('x', root)).toEqual({ minifiedKb: 300, gzipKb: 100 })
    mkdirSync(path.join(root, 'build'))
    writeFileSync(path.join(root, 'build', 'budgets.json'), JSON.stringify({ default: { gzipKb: 90 }, devices: { x: { minifiedKb: 250 } } }))
    expect(budgetFor('x', root)).toEqual({ minifiedKb: 250, gzipKb: 90 })
    expect(budgetFor('y', root)).toEqual({ minifiedKb: 300, gzipKb: 90 })
    expect(budgetFor('x', root, { gzipKb: 120 })).toEqual({ minifiedKb: 250, gzipKb: 120 })
    writeFileSync(path.join(root, 'build', 'budgets.json'), JSON.stringify({ devices: { x: { minifiedKb: 'big' } } }))
    expect(() => budgetFor('x', root)).toThrow(/minifiedKb of x must be a number/)
  })
})

describe('the addon a bundle carries', () => {
  it('the host\'s: built for this Node\'s ABI, platform and architecture (read from the file)', () => {
    const bytes = readFileSync(hostAddon(PROJECT_ROOT))
    expect(abiOfAddon(bytes)).toBe(Number(process.versions.modules))
    expect(headerTarget(bytes)).toEqual({ platform: process.platform, arch: process.arch })
  })

  it('reads the target of ELF, Mach-O and PE headers', () => {
    expect(headerTarget(fakeElf(0xb7, 127))).toEqual({ platform: 'linux', arch: 'arm64' })
    expect(headerTarget(fakeElf(0x28, 115))).toEqual({ platform: 'linux', arch: 'arm' })
    const macho = Buffer.alloc(32)
    macho.writeUInt32LE(0xfeedfacf, 0)
    macho.writeUInt32LE(0x0100000c, 4)
    expect(headerTarget(macho)).toEqual({ platform: 'darwin', arch: 'arm64' })
    const pe = Buffer.alloc(0x100)
    pe.write('MZ', 0, 'latin1')
    pe.writeUInt32LE(0x80, 0x3c)
    pe.write('PE\0\0', 0x80, 'latin1')
    pe.writeUInt16LE(0x8664, 0x84)
    expect(headerTarget(pe)).toEqual({ platform: 'win32', arch: 'x64' })
    expect(headerTarget(Buffer.from('plain text'))).toEqual({})
  })

  it('--addon for another target: recorded in the manifest (Node range from its ABI); verifies only on that target', async () => {
    const dir = temp()
    const file = path.join(dir, 'arm64.node')
    writeFileSync(file, fakeElf(0xb7, 127))
    const keys = generateSigningKeys()
    const built = await buildDevice('thermo', { outDir: path.join(dir, 'out'), signingKey: createPrivateKey(keys.privatePem), addon: { file } })
    expect(built.manifest.addon).toMatchObject({ nodeAbi: 127, platform: 'linux', arch: 'arm64' })
    expect(built.manifest.node).toEqual({ range: '>=22.0.0 <23.0.0', abi: 127 })
    expect(await refused(verifyBundle(built.dir, keys.publicPem))).toMatchObject({ code: 'ABI_MISMATCH' })
    await expect(verifyBundle(built.dir, keys.publicPem, { nodeAbi: 127, platform: 'linux', arch: 'arm64' })).resolves.toMatchObject({ device: 'thermo' })
  }, 30_000)

  it('refuses an --arch or --platform the file contradicts, a file it cannot tell without them, a file that is no addon', () => {
    const dir = temp()
    const arm = path.join(dir, 'arm64.node')
    writeFileSync(arm, fakeElf(0xb7, 115))
    expect(() => resolveAddon({ file: arm, arch: 'x64' }, PROJECT_ROOT)).toThrow(/--arch x64 does not match the addon .* built for arm64/)
    expect(() => resolveAddon({ file: arm, platform: 'darwin' }, PROJECT_ROOT)).toThrow(/--platform darwin does not match/)
    expect(resolveAddon({ file: arm, arch: 'arm64', platform: 'linux' }, PROJECT_ROOT)).toMatchObject({ nodeAbi: 115, arch: 'arm64' })
    const headless = path.join(dir, 'headless.node')
    writeFileSync(headless, Buffer.from('node_register_module_v115'))
    expect(() => resolveAddon({ file: headless }, PROJECT_ROOT)).toThrow(/cannot tell the platform .* give --platform/)
    expect(resolveAddon({ file: headless, platform: 'linux', arch: 'riscv64' }, PROJECT_ROOT)).toMatchObject({ platform: 'linux', arch: 'riscv64' })
    const notAddon = path.join(dir, 'not.node')
    writeFileSync(notAddon, fakeElf(0x3e, 0).subarray(0, 64))
    expect(() => resolveAddon({ file: notAddon }, PROJECT_ROOT)).toThrow(/not a better-sqlite3 addon/)
    expect(() => resolveAddon({ file: path.join(dir, 'missing.node') }, PROJECT_ROOT)).toThrow(/--addon .*missing\.node: no such file/)
    // The host's addon with a target it is not for: give that target's addon.
    expect(() => resolveAddon({ arch: process.arch === 'arm64' ? 'x64' : 'arm64' }, PROJECT_ROOT)).toThrow(/give that target's addon with --addon/)
  })
})
