// bin/outpost.js runs dist/, never TypeScript: in a checkout it rebuilds JavaScript older than the
// sources first; a dist/ it cannot run is one line on stderr and exit code 1, never a stack trace.
// Played in a small checkout of its own (the real bin/outpost.js and bin/build.js, a CLI and a
// runtime module of two lines), so this repository's dist/ is never touched.
import { execFile } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const execFileP = promisify(execFile)
const ROOT = path.resolve('.')
const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

describe('bin/outpost.js and a stale or missing dist/', () => {
  let dir: string
  const at = (...p: string[]): string => path.join(dir, ...p)
  /** Runs the checkout's bin/outpost.js: exit code, stdout, stderr. */
  const outpost = async (): Promise<{ code: number; out: string; err: string }> =>
    execFileP(process.execPath, [at('bin', 'outpost.js')], { timeout: 20_000 }).then(
      (r) => ({ code: 0, out: r.stdout, err: r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout, err: e.stderr }),
    )
  /** Writes a source after a pause, so that its mtime is later than the last build's start. */
  const edit = async (file: string, text: string): Promise<void> => {
    await pause(30)
    writeFileSync(at(file), text)
  }
  const expectOneLine = (err: string, start: string): void => {
    expect(err).not.toContain('    at ')
    expect(err.trimEnd().split('\n')).toHaveLength(1)
    expect(err.trimEnd()).toMatch(new RegExp(`^outpost: ${start}`))
  }

  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'outpost-stale-'))
    mkdirSync(at('bin'))
    mkdirSync(at('runtime'))
    mkdirSync(at('node_modules'))
    copyFileSync(path.join(ROOT, 'bin', 'outpost.js'), at('bin', 'outpost.js'))
    copyFileSync(path.join(ROOT, 'bin', 'build.js'), at('bin', 'build.js'))
    symlinkSync(path.join(ROOT, 'node_modules', 'esbuild'), at('node_modules', 'esbuild'), 'dir')
    writeFileSync(at('package.json'), JSON.stringify({ name: 'mini', type: 'module', private: true }))
    writeFileSync(at('bin', 'cli.ts'), "import { word } from '../runtime/index.js'\nconsole.log(`cli ${word}`)\n")
    writeFileSync(at('runtime', 'index.ts'), "export const word: string = 'one'\n")
  })

  afterAll(() => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
  })

  it('builds a missing dist/ and runs it, silently', async () => {
    expect(await outpost()).toEqual({ code: 0, out: 'cli one\n', err: '' })
    expect(existsSync(at('dist', 'bin', 'cli.js'))).toBe(true)
  })

  it('leaves a current dist/ alone', async () => {
    const before = statSync(at('dist', '.js-built')).mtimeMs
    await pause(30)
    expect(await outpost()).toEqual({ code: 0, out: 'cli one\n', err: '' })
    expect(statSync(at('dist', '.js-built')).mtimeMs).toBe(before)
  })

  it('rebuilds when a source changed, and drops the output of a source that is gone', async () => {
    await edit('runtime/index.ts', "export const word: string = 'two'\n")
    await edit('runtime/extra.ts', 'export const extra = 1\n')
    expect(await outpost()).toEqual({ code: 0, out: 'cli two\n', err: '' })
    expect(existsSync(at('dist', 'runtime', 'extra.js'))).toBe(true)
    await pause(30)
    unlinkSync(at('runtime', 'extra.ts'))
    expect(await outpost()).toEqual({ code: 0, out: 'cli two\n', err: '' })
    expect(existsSync(at('dist', 'runtime', 'extra.js'))).toBe(false)
  })

  it('says in one line that sources which do not compile cannot be rebuilt, and runs nothing', async () => {
    await edit('runtime/index.ts', "export const word: string = = 'three'\n")
    const r = await outpost()
    expect(r.code).toBe(1)
    expect(r.out).toBe('')
    expectOneLine(r.err, 'dist/ is older than runtime/index\\.ts and could not be rebuilt: the sources do not compile: runtime/index\\.ts:1: ')
    await edit('runtime/index.ts', "export const word: string = 'four'\n")
    expect(await outpost()).toEqual({ code: 0, out: 'cli four\n', err: '' })
  })

  it('says in one line that it needs esbuild to rebuild', async () => {
    unlinkSync(at('node_modules', 'esbuild'))
    await edit('runtime/index.ts', "export const word: string = 'five'\n")
    const r = await outpost()
    expect(r.code).toBe(1)
    expectOneLine(r.err, 'dist/ is older than runtime/index\\.ts and esbuild is not installed to rebuild it; run npm install \\(or npm run build\\) in ')
  })

  it('says in one line that an installed copy without its build must be reinstalled', async () => {
    rmSync(at('runtime'), { recursive: true })
    rmSync(at('dist', 'bin', 'cli.js'))
    const r = await outpost()
    expect(r.code).toBe(1)
    expectOneLine(r.err, 'dist/ is missing: this copy of outpost was installed without its build; reinstall it$')
  })
})
