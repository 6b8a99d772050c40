// The device's late built-ins (runtime/lazy-builtin.ts): random bytes drawn without node:crypto,
// checked from a fresh process so that what is loaded is this module's doing alone.
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { transform } from 'esbuild'
import { describe, expect, it } from 'vitest'
import { fillRandom, nodeCrypto } from '../runtime/lazy-builtin.js'

const run = promisify(execFile)

describe('lazy built-ins', () => {
  it('fillRandom fills every byte, differently each time, whatever the length', () => {
    expect(fillRandom(new Uint8Array(0))).toEqual(new Uint8Array(0))
    const a = fillRandom(Buffer.alloc(64))
    const b = fillRandom(Buffer.alloc(64))
    expect(a.equals(b)).toBe(false)
    // 4,096 random bytes: every value shows up (a buffer left partly zero would not pass).
    const big = fillRandom(new Uint8Array(4096))
    expect(new Set(big).size).toBeGreaterThan(240)
    expect(nodeCrypto().randomBytes(4)).toHaveLength(4)
  })

  it('draws random bytes without loading node:crypto, and loads it at the first nodeCrypto() call', async () => {
    // Compiled to plain JavaScript and run by plain node: tsx itself loads node:crypto.
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-lazy-builtin-'))
    const module = path.join(dir, 'lazy-builtin.mjs')
    const source = readFileSync(path.join(import.meta.dirname, '..', 'runtime', 'lazy-builtin.ts'), 'utf8')
    writeFileSync(module, (await transform(source, { loader: 'ts', format: 'esm', target: 'node20' })).code)
    const script = `
      const { fillRandom, nodeCrypto } = await import(${JSON.stringify(module)})
      const has = () => process.moduleLoadList.includes('NativeModule crypto')
      const before = has()
      const bytes = fillRandom(new Uint8Array(16))
      const afterFill = has()
      nodeCrypto().createHash('sha256')
      console.log(JSON.stringify({ before, afterFill, afterCall: has(), n: bytes.length }))`
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { timeout: 30_000 }).finally(() => rmSync(dir, { recursive: true, force: true }))
    expect(JSON.parse(stdout.trim().split('\n').at(-1)!)).toEqual({ before: false, afterFill: false, afterCall: true, n: 16 })
  })
})
