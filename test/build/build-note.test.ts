// `outpost build` as a user runs it (node bin/outpost.js build, a process of its own) on a project
// with a device whose modules cannot be loaded on the build machine: the device is still bundled,
// and the output says once, under that device's breakdown, that it carries the contract
// document's converter and why. A device built beside it, whose modules load, gets no such line.
//
// The CLI builds the devices of the package it runs from (the folder above dist/), so the test
// plays in a small project of its own: the real bin/outpost.js and bin/build.js, a copy of this
// repository's dist/ (current: test/package/global-setup.ts), its runtime/, node_modules/ and
// build/stubs/ linked, and two devices written here. This repository's devices/ and dist/ are
// never touched.
import { execFile } from 'node:child_process'
import { copyFileSync, cpSync, existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import { beforeAll, describe, expect, it } from 'vitest'
import { PROJECT_ROOT } from '../../build/project-root.js'
import { CLEAN_GATEWAY_ENV } from '../helpers/gateway-cli.js'
import { tempDirs } from './build-helpers.js'

const run = promisify(execFile)
const temp = tempDirs('build-note')

/** A project the CLI builds from: bin/ and dist/ of its own, two devices, the rest linked to this repository. */
function makeProject(): string {
  const root = temp()
  const at = (...p: string[]): string => path.join(root, ...p)
  for (const dir of ['bin', 'build', 'devices/fragile', 'devices/plain']) mkdirSync(at(dir), { recursive: true })
  for (const dir of ['runtime', 'node_modules', 'build/stubs']) symlinkSync(path.join(PROJECT_ROOT, dir), at(dir), 'dir')
  for (const file of ['package.json', 'bin/outpost.js', 'bin/build.js']) copyFileSync(path.join(PROJECT_ROOT, file), at(file))
  // Throws as it loads, unless on the device: the build cannot read this device's contracts.
  writeFileSync(at('devices', 'fragile', 'sensor.ts'), "if (!process.env.ON_THE_DEVICE) throw new Error('no sensor on this machine')\nexport const read = (): number => 1\n")
  writeFileSync(at('devices', 'fragile', 'main.ts'), "import { read } from './sensor.js'\nimport { createRuntime } from '../../runtime/index.js'\nvoid createRuntime\nconsole.log(read())\n")
  // Loads anywhere, its contract defined at the top level of a module: read at build time.
  writeFileSync(at('devices', 'plain', 'contract.ts'), [
    "import * as v from 'valibot'",
    "import { defineContract } from '../../runtime/index.js'",
    "export const plainContract = defineContract({ name: 'plain', version: '1', commands: { echo: { payload: v.object({ n: v.number() }), result: v.object({ n: v.number() }) } } })",
  ].join('\n'))
  writeFileSync(at('devices', 'plain', 'main.ts'), [
    "import { createRuntime, defineService } from '../../runtime/index.js'",
    "import { plainContract } from './contract.js'",
    'const service = defineService(plainContract, { commands: { echo: (p) => p } })',
    'void createRuntime',
    "console.log(typeof service)",
  ].join('\n'))
  // Last, so that its build stamp is newer than every source above: bin/outpost.js runs it as it is.
  cpSync(path.join(PROJECT_ROOT, 'dist'), at('dist'), { recursive: true, filter: (src) => !src.startsWith(path.join(PROJECT_ROOT, 'dist', 'bundles')) })
  return root
}

describe('outpost build, a device whose modules cannot be loaded on the build machine', () => {
  let out: string
  let r: { code: number | null; out: string; err: string }

  beforeAll(async () => {
    const root = makeProject()
    out = temp()
    // One command, run where a user runs it (node bin/outpost.js in the project), naming no device:
    // it builds every device under devices/. (Devices named on the command line are checked against
    // dist/devices/, which bin/outpost.js compiles in a checkout; this copy of dist/ has only the demo's.)
    const env = { ...process.env, ...CLEAN_GATEWAY_ENV, OUTPOST_SIGNING_KEY: '', SOURCE_DATE_EPOCH: '', ON_THE_DEVICE: '' }
    r = await run(process.execPath, ['bin/outpost.js', 'build', '--unsigned', '--out', out], { cwd: root, env, timeout: 60_000 }).then(
      (x) => ({ code: 0, out: x.stdout, err: x.stderr }),
      (e: { code: number | null; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout, err: e.stderr }),
    )
  }, 90_000)

  it('builds both (exit code 0, each bundle file there), with one note line naming that device and why', () => {
    expect(r.err).toBe('')
    expect(r.code).toBe(0)
    expect(existsSync(path.join(out, 'fragile', 'fragile.cjs'))).toBe(true)
    expect(existsSync(path.join(out, 'plain', 'plain.cjs'))).toBe(true)
    const notes = `${r.out}\n${r.err}`.split('\n').filter((l) => l.startsWith('note:'))
    expect(notes).toHaveLength(1)
    expect(notes[0]).toMatch(/^note: fragile carries the contract document's converter \(about 17 KB\): its contracts could not be read at build time \(.*no sensor on this machine.*\)$/)
    expect(r.out).not.toMatch(/note: plain/)
  })

  it('gives as the reason the message of what was thrown, not the line of code that threw it', () => {
    const note = r.out.split('\n').find((l) => l.startsWith('note: fragile'))
    expect(note).toMatch(/could not be read at build time \(.*Error: no sensor on this machine\)$/)
    expect(note).not.toContain('process.env.ON_THE_DEVICE')
  })

  it('prints the note under that device\'s size breakdown, before the next device\'s', () => {
    const fragile = r.out.search(/fragile(\.code)?\.[cm]js by dependency/)
    const note = r.out.indexOf('note: fragile')
    const plain = r.out.search(/plain(\.code)?\.[cm]js by dependency/)
    expect(fragile).toBeGreaterThanOrEqual(0)
    expect(plain).toBeGreaterThan(note)
    expect(note).toBeGreaterThan(fragile)
  })

  it('shows the budget that device was held to: the converter\'s weight (18 KB, 6 KB gzip) above the other\'s', () => {
    const budgetOf = (device: string): [number, number] => {
      const m = new RegExp(`^${device}(?:\\.code)?\\.[cm]js by dependency \\(budget (\\d+) KB minified, (\\d+) KB gzip\\):$`, 'm').exec(r.out)
      expect(m, `${device}'s budget line`).not.toBeNull()
      return [Number(m![1]), Number(m![2])]
    }
    const [plainKb, plainGzipKb] = budgetOf('plain')
    expect(budgetOf('fragile')).toEqual([plainKb + 18, plainGzipKb + 6])
  })
})
