// aedes-persistence's own suite (abstract.js, written for node:test) against the SQLite broker
// persistence, run in a child process (persistence-abstract-runner.ts) with TAP output.
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect, it } from 'vitest'

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.resolve(here, '../..')
const require = createRequire(import.meta.url)

it('passes every test of the aedes-persistence abstract suite', () => {
  // How many tests the suite has: its `test(` calls (each one a top-level test).
  const suite = readFileSync(require.resolve('aedes-persistence/abstract.js'), 'utf8')
  const expected = suite.match(/^\s*test\(/gm)?.length ?? 0
  expect(expected).toBeGreaterThanOrEqual(50)
  const run = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=tap', path.join(here, 'persistence-abstract-runner.ts')], {
    cwd: root,
    encoding: 'utf8',
    timeout: 240_000,
  })
  const out = `${run.stdout}\n${run.stderr}`
  // node:test's TAP summary: `# pass 50`, `# fail 0`, ...
  const count = (name: string): number => Number(new RegExp(`^# ${name} (\\d+)$`, 'm').exec(out)?.[1] ?? NaN)
  const failed = [...out.matchAll(/^not ok \d+ - (.*)$/gm)].map((m) => m[1])
  expect(failed, out.slice(-4000)).toEqual([])
  expect(run.status, out.slice(-4000)).toBe(0)
  expect(count('tests')).toBe(expected)
  expect(count('pass')).toBe(expected)
  expect(count('fail')).toBe(0)
  expect(count('skipped') + count('todo') + count('cancelled')).toBe(0)
}, 300_000)
