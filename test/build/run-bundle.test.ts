// The bundle `outpost device` and the demo run (build/run-bundle.ts): built when it is not
// current, taken as it is when it is, rebuilt when a file it was made of changes (and only then),
// built once when several processes ask at once, and a lock left by a build that died taken over.
// A copy of the project's sources in a temp folder stands for the project, so the tests can
// change a source without touching the repository.
import { execFile, spawn } from 'node:child_process'
import { appendFileSync, cpSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import { beforeAll, describe, expect, it } from 'vitest'
import { currentBundle, ensureRunnableBundle, stampFile } from '../../build/index.js'
import { tempDirs } from './build-helpers.js'

const ROOT = path.resolve(import.meta.dirname, '..', '..')
const temp = tempDirs('run-bundle')
const run = promisify(execFile)

/** A project made of copies of this one's sources and a link to its node_modules. */
function projectCopy(): string {
  const root = temp()
  for (const part of ['package.json', 'devices', 'runtime', 'build']) cpSync(path.join(ROOT, part), path.join(root, part), { recursive: true })
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(root, 'node_modules'), 'dir')
  return root
}

describe('the bundle a device of the project runs', () => {
  let root: string
  let out: string

  beforeAll(() => {
    root = projectCopy()
    out = path.join(root, 'dist', 'bundles')
  })

  it('is built when there is none, then taken as it is; a changed source builds it again, once', async () => {
    const notes: string[] = []
    const first = await ensureRunnableBundle('display', { root, onNote: (l) => notes.push(l) })
    expect(first.built).toBe(true)
    expect(first.entry).toBe(path.join(out, 'display', 'display.cjs'))
    expect(notes[0]).toMatch(/^building the display bundle/)
    expect(notes[1]).toMatch(/^built dist\/bundles\/display\/display\.cjs: [\d.]+ KB, [\d.]+ KB gzip, unsigned$/)
    const stamp = JSON.parse(readFileSync(stampFile(out, 'display'), 'utf8')) as { inputs: string[] }
    expect(stamp.inputs).toContain('devices/display/display-service.ts')
    expect(stamp.inputs).toContain('runtime/service/runtime.ts')
    expect(stamp.inputs.some((f) => f.includes('node_modules/mqtt/'))).toBe(true)

    expect(await ensureRunnableBundle('display', { root })).toEqual({ entry: first.entry, built: false })
    // A file the display bundle is not made of changes: still current.
    appendFileSync(path.join(root, 'devices', 'thermo', 'thermo-service.ts'), '\n// a comment\n')
    expect((await ensureRunnableBundle('display', { root })).built).toBe(false)
    // One it is made of: built again, then current again.
    appendFileSync(path.join(root, 'devices', 'display', 'display-service.ts'), '\nexport const touched = 1\n')
    expect(currentBundle(out, 'display', root)).toBeUndefined()
    expect((await ensureRunnableBundle('display', { root })).built).toBe(true)
    expect((await ensureRunnableBundle('display', { root })).built).toBe(false)
  }, 60_000)

  it('is built again when a file of the bundle is gone or its stamp is damaged', async () => {
    await ensureRunnableBundle('display', { root })
    rmSync(path.join(out, 'display', 'display.cjs'))
    expect(currentBundle(out, 'display', root)).toBeUndefined()
    expect((await ensureRunnableBundle('display', { root })).built).toBe(true)
    writeFileSync(stampFile(out, 'display'), '{"format":1,"device":"disp')
    expect((await ensureRunnableBundle('display', { root })).built).toBe(true)
    expect(existsSync(path.join(out, 'display', 'display.cjs'))).toBe(true)
  }, 60_000)

  it('is built by one of several processes asking at once; the others take it', async () => {
    const fresh = projectCopy()
    const script = `
      const { ensureRunnableBundle } = await import(${JSON.stringify(path.join(ROOT, 'build', 'run-bundle.ts'))})
      const r = await ensureRunnableBundle('thermo', { root: ${JSON.stringify(fresh)} })
      console.log(JSON.stringify(r))`
    const results = await Promise.all([1, 2, 3].map(() => run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, timeout: 60_000 })))
    const answers = results.map((r) => JSON.parse(r.stdout.trim()) as { entry: string; built: boolean })
    expect(answers.filter((a) => a.built)).toHaveLength(1)
    expect(new Set(answers.map((a) => a.entry))).toEqual(new Set([path.join(fresh, 'dist', 'bundles', 'thermo', 'thermo.cjs')]))
    expect(existsSync(path.join(fresh, 'dist', 'bundles', 'thermo', 'better_sqlite3.node'))).toBe(true)
    expect(existsSync(path.join(fresh, 'dist', 'bundles', '.thermo.lock'))).toBe(false)
  }, 90_000)

  it('takes over the lock of a build that died; waits for a live one, then says who holds it', async () => {
    const fresh = projectCopy()
    const bundles = path.join(fresh, 'dist', 'bundles')
    const dead = spawn(process.execPath, ['-e', '0'])
    await new Promise((r) => dead.once('exit', r))
    const lock = path.join(bundles, '.display.lock')
    // A lock with the pid of a process that has exited, as kill -9 during a build leaves it.
    mkdirSync(bundles, { recursive: true })
    writeFileSync(lock, String(dead.pid))
    expect((await ensureRunnableBundle('display', { root: fresh })).built).toBe(true)
    expect(existsSync(lock)).toBe(false)

    // A lock held by a live process (this one), on a bundle that is not current.
    appendFileSync(path.join(fresh, 'devices', 'display', 'display-service.ts'), '\nexport const again = 2\n')
    writeFileSync(lock, String(process.pid))
    const err = await ensureRunnableBundle('display', { root: fresh, lockWaitMs: 300 }).catch((e: unknown) => e)
    expect(err).toMatchObject({ code: 'TIMEOUT', message: expect.stringContaining(`another process (pid ${process.pid}) is building`) })
    expect(readFileSync(lock, 'utf8')).toBe(String(process.pid))
    rmSync(lock)
  }, 60_000)
})
