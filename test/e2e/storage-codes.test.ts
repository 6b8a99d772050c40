// A device started through the CLI (`outpost device thermo`) on storage it cannot use: each
// failure is named by its real cause, in one line, with the exit code the README promises.
import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { startProcess } from '../helpers/device-process.js'
import { readOnlyFolder } from '../helpers/small-disk.js'

const run = promisify(execFile)

/** Runs `outpost device thermo` with `env`; it is expected to stop at start. */
async function device(env: Record<string, string>, as: { uid?: number; gid?: number } = {}): Promise<{ code: number; out: string }> {
  try {
    // A broker nobody listens on: the device stops at its database, before it would connect.
    const r = await run(process.execPath, [path.resolve('bin/outpost.js'), 'device', 'thermo', '--url', 'mqtt://127.0.0.1:9', '--log-format', 'json'], {
      env: { ...process.env, ...env },
      timeout: 60_000,
      ...as,
    })
    return { code: 0, out: r.stdout + r.stderr }
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string }
    return { code: x.code, out: x.stdout + x.stderr }
  }
}

/** The one fatal log line of a run. */
function fatal(out: string): { code?: string; msg?: string } {
  const lines = out.split('\n').filter((l) => l.includes('"level":60'))
  expect(lines, out).toHaveLength(1)
  return JSON.parse(lines[0]!) as { code?: string; msg?: string }
}

describe('a device on storage it cannot use', () => {
  const cleanup = cleanupAfterEach()

  it('calls a pseudo file system that takes no files read-only, not full (/proc, /sys), and does not hang making a folder there', async () => {
    // /proc/outpost-x/data: Node's recursive mkdir looped there for ever at full CPU (ENOENT, then EEXIST for /proc).
    for (const dir of ['/proc/1', '/sys/kernel', '/proc/outpost-x/data']) {
      if (!existsSync(dir)) continue
      const r = await device({ OUTPOST_DATA_DIR: dir })
      expect(r.code, r.out).toBe(1)
      const line = fatal(r.out)
      expect(line.code, line.msg).toBe('STORE_READ_ONLY')
      expect(line.msg).not.toContain('full')
    }
    expect(existsSync('/proc/1')).toBe(true)
  }, 120_000)

  it('calls a data folder that cannot be made on a read-only disk STORE_READ_ONLY', async () => {
    const base = mkdtempSync(path.join(tmpdir(), 'outpost-codes-'))
    cleanup(() => rmSync(base, { recursive: true, force: true }))
    const ro = readOnlyFolder(path.join(base, 'disk'))
    cleanup(() => ro.dispose())
    ro.seal()
    const r = await device({ OUTPOST_DATA_DIR: path.join(ro.dir, 'sub', 'data') }, ro.spawnAs)
    expect(r.code, r.out).toBe(1)
    const line = fatal(r.out)
    expect(line.code, line.msg).toBe('STORE_READ_ONLY')
    expect(line.msg).toContain('OUTPOST_DATA_DIR')
    expect(existsSync(path.join(ro.dir, 'sub'))).toBe(false)
  }, 60_000)

  it('stops with exit code 2 and one line naming a wrong OUTPOST_STORE_WAIT_MS', async () => {
    const base = mkdtempSync(path.join(tmpdir(), 'outpost-codes-'))
    cleanup(() => rmSync(base, { recursive: true, force: true }))
    const r = await device({ OUTPOST_DATA_DIR: base, OUTPOST_STORE_WAIT_MS: 'abc' })
    expect(r.code, r.out).toBe(2)
    const lines = r.out.trim().split('\n')
    expect(lines, r.out).toHaveLength(1)
    expect(lines[0]).toContain('BAD_ARGUMENT')
    expect(lines[0]).toContain('OUTPOST_STORE_WAIT_MS')
    expect(lines[0]).toContain('abc')
  }, 60_000)

  it('a device run on its own (as its bundle runs) also stops with exit code 2 on a wrong OUTPOST_STORE_WAIT_MS', async () => {
    const base = mkdtempSync(path.join(tmpdir(), 'outpost-codes-'))
    cleanup(() => rmSync(base, { recursive: true, force: true }))
    let r: { code: number; out: string }
    try {
      const x = await run(process.execPath, ['--import', 'tsx', 'devices/thermo/main.ts'], {
        env: { ...process.env, OUTPOST_DATA_DIR: base, OUTPOST_STORE_WAIT_MS: '-5', OUTPOST_MQTT_URL: 'mqtt://127.0.0.1:9', OUTPOST_LOG_FORMAT: 'json' },
        timeout: 60_000,
      })
      r = { code: 0, out: x.stdout + x.stderr }
    } catch (e) {
      const x = e as { code: number; stdout: string; stderr: string }
      r = { code: x.code, out: x.stdout + x.stderr }
    }
    expect(r.code, r.out).toBe(2)
    const line = fatal(r.out)
    expect(line.code).toBe('BAD_ARGUMENT')
    expect(line.msg).toContain('OUTPOST_STORE_WAIT_MS')
  }, 60_000)

  it('the demo refuses a wrong OUTPOST_STORE_WAIT_MS before it starts anything', async () => {
    const base = mkdtempSync(path.join(tmpdir(), 'outpost-codes-'))
    cleanup(() => rmSync(base, { recursive: true, force: true }))
    let r: { code: number; out: string }
    try {
      const x = await run(process.execPath, [path.resolve('bin/outpost.js'), 'demo', '--duration', '3', '--outage', '0'], {
        env: { ...process.env, OUTPOST_DATA_DIR: path.join(base, 'data'), OUTPOST_STORE_WAIT_MS: '1.5' },
        timeout: 60_000,
      })
      r = { code: 0, out: x.stdout + x.stderr }
    } catch (e) {
      const x = e as { code: number; stdout: string; stderr: string }
      r = { code: x.code, out: x.stdout + x.stderr }
    }
    expect(r.code, r.out).toBe(2)
    expect(r.out.trim().split('\n'), r.out).toHaveLength(1)
    expect(r.out).toContain('BAD_ARGUMENT')
    expect(r.out).toContain('OUTPOST_STORE_WAIT_MS')
    expect(existsSync(path.join(base, 'data'))).toBe(false)
  }, 60_000)

  it('the demo stops, exit code 1, when a device of it stops by itself: here thermo-1, whose database another process holds', async () => {
    const base = mkdtempSync(path.join(tmpdir(), 'outpost-codes-'))
    cleanup(() => rmSync(base, { recursive: true, force: true }))
    const holder = startProcess('bin/outpost.js', ['device', 'thermo', '--id', 'thermo-1', '--url', 'mqtt://127.0.0.1:9', '--log-format', 'json'], { OUTPOST_DATA_DIR: base })
    cleanup(() => holder.kill())
    await holder.waitFor('"msg":"ready"', 60_000)
    // It went on with display-1 alone until Ctrl-C, then exited 0.
    let r: { code: number; out: string }
    try {
      const x = await run(process.execPath, [path.resolve('bin/outpost.js'), 'demo', '--duration', '50', '--outage', '0', '--log-format', 'json'], { env: { ...process.env, OUTPOST_DATA_DIR: base }, timeout: 60_000 })
      r = { code: 0, out: x.stdout + x.stderr }
    } catch (e) {
      const x = e as { code: number; stdout: string; stderr: string }
      r = { code: x.code, out: x.stdout + x.stderr }
    }
    expect(r.code, r.out).toBe(1)
    const lines = r.out.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { level?: number; device?: string; code?: string | number; msg?: string })
    expect(lines.find((l) => l.level === 60 && l.device === 'thermo-1')?.code, r.out).toBe('STORE_IN_USE')
    expect(lines.some((l) => l.device === 'demo' && l.msg?.includes('device thermo-1 stopped by itself')), r.out).toBe(true)
    expect(lines.at(-1)?.msg, r.out).toBe('stopped')
    // The holder was left alone.
    expect(holder.child.exitCode).toBe(null)
  }, 120_000)
})
