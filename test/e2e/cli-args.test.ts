// The real CLI (node bin/outpost.js) given wrong arguments, options and variables: one line on
// stderr naming what was wrong and what is accepted, exit code 2, never a stack trace.
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { afterAll, describe, expect, it } from 'vitest'

const run = promisify(execFile)

/** Runs the CLI; a run that does not end by itself is stopped after 20 s (it should have refused at once). */
async function outpost(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; out: string; err: string }> {
  try {
    const r = await run(process.execPath, ['bin/outpost.js', ...args], { env: { ...process.env, ...env }, timeout: 20_000 })
    return { code: 0, out: r.stdout, err: r.stderr }
  } catch (e) {
    const x = e as { code: number | null; stdout: string; stderr: string }
    return { code: x.code, out: x.stdout, err: x.stderr }
  }
}

/** Runs node with these arguments, as `outpost` does. */
async function node(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; out: string; err: string }> {
  try {
    const r = await run(process.execPath, args, { env: { ...process.env, ...env }, timeout: 20_000 })
    return { code: 0, out: r.stdout, err: r.stderr }
  } catch (e) {
    const x = e as { code: number | null; stdout: string; stderr: string }
    return { code: x.code, out: x.stdout, err: x.stderr }
  }
}

const dir = mkdtempSync(path.join(tmpdir(), 'outpost-cli-args-'))
const aFile = path.join(dir, 'not-a-folder')
writeFileSync(aFile, 'a file, not a folder\n')
const version = (JSON.parse(readFileSync('package.json', 'utf8')) as { version: string }).version

describe('outpost given bad arguments', () => {
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  // [what is run, environment, what the line must name]
  const cases: [string[], Record<string, string>, string][] = [
    [['--prot'], {}, '--prot'],
    [['demo', '--prot', '1'], {}, '--prot'],
    [['jobs', 'queues', '--db'], {}, '--db'],
    [['jobs', 'queues', '--db', '--json'], {}, '--db'],
    [['jobs', 'dead', 'thermo/sample', '--db', aFile, '--limit', 'abc'], {}, '--limit'],
    [['jobs', 'queues', '--json=yes', '--db', aFile], {}, '--json'],
    [['device', 'thermo', '--url', 'notaurl'], { OUTPOST_DATA_DIR: dir }, '--url'],
    [['device', 'thermo'], { OUTPOST_MQTT_URL: 'http://example.com', OUTPOST_DATA_DIR: dir }, 'OUTPOST_MQTT_URL'],
    [['device', 'thermo', '--id', 'a/b'], { OUTPOST_DATA_DIR: dir }, '--id'],
    [['device', 'thermo', '--url', 'mqtt://127.0.0.1:1'], { OUTPOST_DATA_DIR: aFile }, 'OUTPOST_DATA_DIR'],
    [['device', 'thermo', '--url', 'mqtt://127.0.0.1:1'], { OUTPOST_DATA_DIR: path.join(aFile, 'below') }, 'OUTPOST_DATA_DIR'],
    [['demo', '--duration', '1'], { OUTPOST_DATA_DIR: aFile }, 'OUTPOST_DATA_DIR'],
    [['device', '../examples/hello'], {}, '../examples/hello'],
    [['device', 'contracts'], {}, 'contracts'],
    [['device'], {}, 'device'],
    [['gateway', '--port', 'abc'], {}, '--port'],
    [['gateway', '--port', '70000'], {}, '--port'],
    [['gateway', '--port', '-1'], {}, '--port'],
    [['gateway'], { OUTPOST_MQTT_PORT: 'abc' }, 'OUTPOST_MQTT_PORT'],
    [['gateway', '--host', 'not a host!'], {}, '--host'],
    [['gateway', '--db', 'x.db'], {}, '--db'],
    [['gateway', '--log-level', 'loud'], {}, '--log-level'],
    [['gateway'], { OUTPOST_LOG_LEVEL: 'loud' }, 'OUTPOST_LOG_LEVEL'],
    [['demo', '--log-format', 'xml'], {}, '--log-format'],
    [['demo', '--duration', 'abc'], {}, '--duration'],
    [['demo', '--duration', '0'], {}, '--duration'],
    [['demo', '--outage', 'abc'], {}, '--outage'],
    [['demo', '--outage-after', '-1'], {}, '--outage-after'],
    [['demo', 'now'], {}, 'now'],
    [['frobnicate'], {}, 'frobnicate'],
    // The gateway's own monitor is the client `gateway`: a device with that id would take its session.
    [['device', 'display', '--id', 'gateway'], { OUTPOST_DATA_DIR: dir }, '--id'],
    [['device', 'display'], { OUTPOST_DEVICE_ID: 'gateway', OUTPOST_DATA_DIR: dir }, 'OUTPOST_DEVICE_ID'],
    [['demo', '--duration', '1'], { OUTPOST_SAMPLE_MS: 'abc', OUTPOST_DATA_DIR: dir }, 'OUTPOST_SAMPLE_MS'],
    [['demo', '--duration', '1'], { OUTPOST_SAMPLE_MS: '0', OUTPOST_DATA_DIR: dir }, 'OUTPOST_SAMPLE_MS'],
    [['demo', '--duration', '1'], { OUTPOST_SAMPLE_MS: '-5', OUTPOST_DATA_DIR: dir }, 'OUTPOST_SAMPLE_MS'],
  ]

  // Each case is a process of its own that refuses at once: up to five at a time (vitest's
  // maxConcurrency) instead of one after the other.
  it.concurrent.for<[string[], Record<string, string>, string]>(cases)('refuses %j %j in one line naming %s, with exit code 2', { timeout: 30_000 }, async ([args, env, named], { expect }) => {
    const r = await outpost(args, env)
    expect(r.err).not.toContain('    at ')
    const lines = r.err.trimEnd().split('\n')
    expect(lines).toHaveLength(1)
    expect(lines[0]).toContain(named)
    expect(lines[0]).toContain('BAD_ARGUMENT')
    expect(r.code).toBe(2)
  })

  it('refuses a bad OUTPOST_SAMPLE_MS in the thermo device, under the CLI or on its own, in one line naming it, with exit code 2', async () => {
    for (const value of ['abc', '0', '-5', '1.5']) {
      const env = { OUTPOST_SAMPLE_MS: value, OUTPOST_DATA_DIR: dir, OUTPOST_MQTT_URL: 'mqtt://127.0.0.1:1', OUTPOST_LOG_FORMAT: 'pretty' }
      for (const r of [await outpost(['device', 'thermo'], env), await node(['--import', 'tsx', 'devices/thermo/main.ts'], env)]) {
        const all = `${r.out}${r.err}`
        expect(all).not.toContain('    at ')
        const lines = all.trimEnd().split('\n')
        expect(lines).toHaveLength(1)
        expect(lines[0]).toContain('OUTPOST_SAMPLE_MS')
        expect(lines[0]).toContain(`"${value}"`)
        expect(lines[0]).toContain('BAD_ARGUMENT')
        expect(r.code).toBe(2)
      }
    }
  }, 120_000)

  it('never prints the password of a broker URL it refuses', async () => {
    const r = await outpost(['device', 'display', '--url', 'mqtt://admin:s3cretPW@127.0.0.1:x'], { OUTPOST_DATA_DIR: dir })
    expect(r.code).toBe(2)
    expect(r.err).toContain('--url')
    expect(r.err).toContain('admin')
    expect(r.err).not.toContain('s3cretPW')
  }, 30_000)

  it('answers a wrong jobs call with one line on stderr and the jobs help on stdout', async () => {
    for (const [args, named] of [[['jobs', 'frobnicate', '--db', aFile], 'frobnicate";'], [['jobs', 'queues'], '--db'], [['jobs', 'stauts', '--db', aFile], 'unknown jobs command "stauts" (did you mean status?)']] as const) {
      const r = await outpost([...args])
      expect(r.code).toBe(2)
      expect(r.err).not.toContain('    at ')
      expect(r.err.trimEnd().split('\n')).toHaveLength(1)
      expect(r.err).toContain(named)
      expect(r.out).toContain('outpost jobs — operate the durable queues')
    }
  }, 30_000)

  it('prints its version', async () => {
    for (const flag of ['--version', '-v']) {
      const r = await outpost([flag])
      expect(r.code).toBe(0)
      expect(r.out.trim()).toBe(version)
    }
  }, 30_000)

  it('shows the jobs help for jobs --help, jobs help and help jobs', async () => {
    for (const args of [['jobs', '--help'], ['jobs', 'help'], ['help', 'jobs'], ['jobs', '-h']]) {
      const r = await outpost(args)
      expect(r.code).toBe(0)
      expect(r.out).toContain('outpost jobs — operate the durable queues')
      expect(r.err).toBe('')
    }
  }, 30_000)

  it('shows the help for <command> --help, even beside a wrong value', async () => {
    for (const args of [['demo', '--help'], ['gateway', '--help'], ['device', '--help'], ['gateway', '--port', 'abc', '--help']]) {
      const r = await outpost(args)
      expect(r.code).toBe(0)
      expect(r.out).toContain('outpost device <name>')
      expect(r.err).toBe('')
    }
  }, 30_000)
})
