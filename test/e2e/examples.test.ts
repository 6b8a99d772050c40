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
})
