// terser's pass over a device's code (build/compress.ts) and what it keeps: a cache entry that is
// not what this build wrote for this input (cut short, emptied, another input's, a FIFO, a link to
// /dev/zero, a folder) is never used: the code is compressed again, the same bytes, without
// hanging. Where a bundle is written does not change its cache key. A project whose cache cannot
// be written at all builds the same bundle. And stacks through an `await` of the compressed code
// name the line of that `await` (terser maps none; build/await-mappings.ts adds them).
import { execFile } from 'node:child_process'
import { lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import { decode } from '@jridgewell/sourcemap-codec'
import { build } from 'esbuild'
import { describe, expect, it } from 'vitest'
import { bundleDevice } from '../../build/bundle.js'
import { buildDevice } from '../../build/build-device.js'
import { compressCode } from '../../build/compress.js'
import { PROJECT_ROOT } from '../../build/project-root.js'
import { bareEnv, tempDirs } from './build-helpers.js'

const temp = tempDirs('compress-cache')
const run = promisify(execFile)

/** esbuild's minified output and map for a small module of its own. */
async function esbuilt(text: string): Promise<{ code: string; map: string }> {
  const r = await build({ stdin: { contents: text, loader: 'js', sourcefile: 'in.js' }, bundle: true, platform: 'node', format: 'cjs', minify: true, sourcemap: 'external', outfile: 'x.cjs', write: false, logLevel: 'silent' })
  return { code: r.outputFiles.find((o) => o.path.endsWith('x.cjs'))!.text, map: r.outputFiles.find((o) => o.path.endsWith('.map'))!.text }
}

const entries = (root: string): string[] => readdirSync(path.join(root, 'node_modules', '.cache', 'outpost-build', 'compressed')).filter((n) => n.endsWith('.json'))

describe("terser's pass and its cache", () => {
  it('never uses an entry that is not the result for that input: damaged, swapped, a FIFO, /dev/zero, a folder', async () => {
    const root = temp()
    const one = await esbuilt('function area(width, height) { const product = width * height; return product }\nconsole.log(area(2, 3))\n')
    const other = await esbuilt('console.log("another device")\n')
    const first = await compressCode('one', one.code, one.map, 'x.cjs', root, 'cjs')
    expect(Buffer.from(first.code).toString()).toContain('console.log(')
    const [name] = entries(root)
    const entry = path.join(root, 'node_modules', '.cache', 'outpost-build', 'compressed', name!)
    await compressCode('other', other.code, other.map, 'x.cjs', root, 'cjs')
    const otherEntry = entries(root).find((n) => n !== name)!
    const damages: Record<string, () => unknown> = {
      'cut short': () => truncateSync(entry, 40),
      emptied: () => truncateSync(entry, 0),
      "another input's entry": () => writeFileSync(entry, readFileSync(path.join(path.dirname(entry), otherEntry))),
      'code changed, hash kept': () => writeFileSync(entry, readFileSync(entry, 'utf8').replace('console.log(', 'console.error(')),
      'a FIFO': () => run('mkfifo', [entry]),
      'a link to /dev/zero': () => symlinkSync('/dev/zero', entry),
      'a folder': () => mkdirSync(entry),
    }
    const replacesTheFile = new Set(['a FIFO', 'a link to /dev/zero', 'a folder'])
    for (const [what, damage] of Object.entries(damages)) {
      // A good entry first (the one before may have left a folder), then the damage.
      rmSync(entry, { recursive: true, force: true })
      await compressCode('one', one.code, one.map, 'x.cjs', root, 'cjs')
      if (replacesTheFile.has(what)) rmSync(entry)
      await damage()
      const again = await compressCode('one', one.code, one.map, 'x.cjs', root, 'cjs')
      expect(Buffer.from(again.code).toString(), what).toBe(Buffer.from(first.code).toString())
      expect(again.map, what).toBe(first.map)
    }
    // What was damaged as a file is replaced by a good entry; a FIFO, a link, a folder are left (never read).
    expect(lstatSync(entry).isDirectory()).toBe(true)
  }, 60_000)

  it('keys an entry by the code and its sources, not by where the bundle is written; a project whose cache cannot be written builds the same bundle', async () => {
    const project = (): string => {
      const root = temp()
      mkdirSync(path.join(root, 'devices', 'hello'), { recursive: true })
      mkdirSync(path.join(root, 'build'))
      for (const dir of ['runtime', 'build/stubs']) symlinkSync(path.join(PROJECT_ROOT, dir), path.join(root, dir), 'dir')
      writeFileSync(path.join(root, 'devices', 'hello', 'main.ts'), "import { createRuntime } from '../../runtime/index.js'\nvoid createRuntime\nconsole.log('hello from a device')\n")
      return root
    }
    // A project of its own: node_modules of links to this repository's packages, and a cache of its own.
    const root = project()
    mkdirSync(path.join(root, 'node_modules'))
    for (const pkg of readdirSync(path.join(PROJECT_ROOT, 'node_modules'))) if (pkg !== '.cache') symlinkSync(path.join(PROJECT_ROOT, 'node_modules', pkg), path.join(root, 'node_modules', pkg))
    const a = await bundleDevice('hello', path.join(temp(), 'a'), root)
    const made = entries(root)
    expect(made).toHaveLength(1)
    const b = await bundleDevice('hello', path.join(temp(), 'deeper', 'and', 'deeper', 'b'), root)
    expect(entries(root)).toEqual(made)
    expect(readFileSync(b.code)).toEqual(readFileSync(a.code))
    expect(readFileSync(b.map, 'utf8')).toBe(readFileSync(a.map, 'utf8'))
    // No cache at all: `.cache` is a file, so nothing can be made under it (nor the contract table's loader).
    rmSync(path.join(root, 'node_modules', '.cache'), { recursive: true })
    writeFileSync(path.join(root, 'node_modules', '.cache'), 'not a folder')
    const c = await bundleDevice('hello', path.join(temp(), 'c'), root)
    expect(c.converterKept).toBeUndefined()
    expect(readFileSync(c.code)).toEqual(readFileSync(a.code))
    const { stdout } = await run(process.execPath, [c.file], { env: bareEnv({}) })
    expect(stdout).toContain('hello from a device')
  }, 120_000)

  it("maps the await a stack's async frame names to that await's line (thermo: main.ts's `await runtime.start(…)`)", async () => {
    // Built as `outpost build` builds it: the SQLite addon beside it.
    const bundle = await buildDevice('thermo', { outDir: temp(), unsigned: true })
    const code = readFileSync(bundle.code, 'utf8')
    const map = JSON.parse(readFileSync(`${bundle.code}.map`, 'utf8')) as { sources: string[]; mappings: string }
    const lines = decode(map.mappings)
    let onAwait = 0
    let all = 0
    for (const [i, text] of code.split('\n').entries()) {
      for (const m of text.matchAll(/(?<![\w$.])await\b/g)) {
        // As a consumer finds it: the last segment at or before the column.
        const seg = (lines[i] ?? []).filter((s) => s[0] <= m.index).at(-1)
        if (seg === undefined || seg.length < 4) continue
        all++
        const source = readFileSync(path.join(PROJECT_ROOT, map.sources[seg[1]!]!), 'utf8').split('\n')[seg[2]!]!
        if (source.includes('await')) onAwait++
      }
    }
    // The rest await a function terser wrote in place of its call: they map to that function.
    expect(all).toBeGreaterThan(50)
    expect(onAwait / all).toBeGreaterThan(0.85)
    // A stack through the device's start, as a user reads it with --enable-source-maps.
    const trap = path.join(temp(), 'trap.cjs')
    writeFileSync(trap, "const real = process.hrtime\nlet n = 0\nprocess.hrtime = Object.assign((...a) => { if (++n === 3) throw new Error('trap'); return real(...a) }, { bigint: real.bigint })\n")
    const env = bareEnv({ OUTPOST_MQTT_URL: 'mqtt://127.0.0.1:1', OUTPOST_DEVICE_ID: 'await-map', OUTPOST_DATA_DIR: temp(), NODE_OPTIONS: `--enable-source-maps --require ${trap}` })
    const out = await run(process.execPath, [bundle.entry], { env, timeout: 20_000 }).then((r) => r.stdout + r.stderr, (e: { stdout: string; stderr: string }) => e.stdout + e.stderr)
    const line = readFileSync(path.join(PROJECT_ROOT, 'devices', 'thermo', 'main.ts'), 'utf8').split('\n').findIndex((l) => l.includes('await runtime.start(')) + 1
    expect(out).toContain('Error: trap')
    expect(out).toMatch(new RegExp(`at async .*devices/thermo/main\\.ts:${line}:\\d+\\)`))
  }, 60_000)
})
