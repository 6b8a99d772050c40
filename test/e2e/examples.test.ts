// The examples as their READMEs run them (npx tsx examples/<name>/main.ts). They import the
// package by name (outpost/…), which plain Node resolves to dist/, the build the test run's global
// setup keeps current: they run as code outside this repository would.
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'

const run = promisify(execFile)

describe('examples', () => {
  it('hello prints what its README promises', async () => {
    const { stdout } = await run(process.execPath, ['--import', 'tsx', 'examples/hello/main.ts'], { timeout: 20_000 })
    expect(stdout).toContain('display heard a reading from sensor-1: 21.5')
    expect(stdout).toContain('display: 21.5 °C')
    expect(stdout).toContain('panel got 70.7 °F')
    expect(stdout).toContain('bad payload: VALIDATION_FAILED')
  })

  it('queue prints what its README promises, in order', async () => {
    const { stdout } = await run(process.execPath, ['--import', 'tsx', 'examples/queue/main.ts'], { timeout: 20_000 })
    expect(stdout.trim().split('\n')).toEqual([
      'dashboard: resized to 512 KiB on attempt 1',
      'dashboard: attempt 1 failed (INTERNAL), will retry',
      'dashboard: resized to 1024 KiB on attempt 2',
      'dashboard: gave up (failed): photo 3 is corrupt',
      'queue: completed 2, dead 1',
      'dead letter: photo 3 is corrupt',
    ])
  })
})
