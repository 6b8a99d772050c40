// A damaged boot pointer (active.json cut short on a card, garbage bytes, or JSON that is not a
// pointer: edited by hand) must not leave a device that boots neither bundle. The launcher, run as
// a real process, recovers to a slot that verifies (the one state.json names as last started, else
// the newer build), keeps the damaged bytes as active.json.damaged and writes a fresh pointer (on a
// read-only disk it goes on with it in memory); `outpost flash --to` repairs the device, and
// `outpost flash status` says what the launcher would do. Both slots damaged too: no bootable slot.
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { generateSigningKeys } from '../../build/index.js'
import { tempDirs } from '../build/build-helpers.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import type { TestProcess } from '../helpers/device-process.js'
import { outpost } from '../helpers/gateway-cli.js'
import { until } from '../helpers/wait.js'
import { mountSmallDisk } from '../helpers/small-disk.js'
import { fakeBundle, launcherCheck, readJson, startedPid, startLauncher, variant } from './flash-helpers.js'

const temp = tempDirs('flash-pointer')

/** A device that reports ready (over IPC and by its log line) and runs until it is stopped or its launcher goes away. */
const READY_JS = "process.send?.('outpost:ready')\nconsole.log(JSON.stringify({ level: 30, msg: 'ready' }))\nprocess.on('disconnect', () => process.exit(0))\nsetInterval(() => {}, 1000)\n"

interface Pointer { format: number; slot: string; previous: string | null; confirmed: boolean; starts: number; switchedAt: string }

describe('a damaged active.json: the device still boots a bundle', () => {
  const keys = generateSigningKeys()
  const cleanup = cleanupAfterEach()
  let pub: string
  /** Built 2025-03-01 and 2025-04-01: `newer` is the newer build. */
  let older: string
  let newer: string
  let third: string

  const flashed = async (bundle: string, dev: string, ...more: string[]): Promise<string> => {
    const r = await outpost(['flash', bundle, '--to', dev, '--change-device', ...more])
    expect(r.err).toBe('')
    expect(r.code).toBe(0)
    return r.out
  }
  /** A device folder with `a` in slot a and `b` in slot b (active, new); with `keptA`, slot a was started and kept first (state.json: success, slot a). */
  const device = async (a: string, b: string, keptA = false): Promise<string> => {
    const dev = temp()
    await flashed(a, dev, '--key', pub)
    if (keptA) {
      const l = launch(dev)
      await l.waitFor('slot a is ready: kept')
      await stop(l)
      expect(readJson(path.join(dev, 'state.json'))).toMatchObject({ outcome: 'success', slot: 'a' })
    }
    await flashed(b, dev)
    expect(readJson(path.join(dev, 'active.json'))).toMatchObject({ slot: 'b', previous: 'a', confirmed: false })
    return dev
  }
  const launch = (dev: string, env: Record<string, string> = {}): TestProcess => {
    const l = startLauncher(dev, { OUTPOST_LAUNCHER_RESTART_MS: '100', ...env })
    cleanup(() => l.kill())
    return l
  }
  const stop = async (l: TestProcess): Promise<void> => {
    l.child.kill('SIGTERM')
    expect((await l.exited).code).toBe(0)
  }
  const pointerFile = (dev: string): string => path.join(dev, 'active.json')
  /** The launcher's warning about the damaged pointer: exactly one line, JSON, level 40, naming the file. */
  const warning = (l: TestProcess, dev: string): { level: number; file: string; slot?: string; msg: string } => {
    const lines = l.lines.filter((x) => x.includes('"device":"launcher"') && x.includes(`${pointerFile(dev)} is not`))
    expect(lines).toHaveLength(1)
    const w = JSON.parse(lines[0]!) as { level: number; file: string; slot?: string; msg: string }
    expect(w).toMatchObject({ level: 40, file: pointerFile(dev) })
    return w
  }
  /** The launcher started `slot` (device `name`), which reported ready; the damaged bytes are kept and a fresh pointer written. */
  const bootsFrom = async (dev: string, slot: string, name: string, damagedBytes: Buffer): Promise<TestProcess> => {
    const l = launch(dev)
    await l.waitFor(`started slot ${slot}: ${name} 0.0.1`)
    await l.waitFor('"msg":"ready"')
    expect(l.lines.some((x) => x.includes('started slot') && !x.includes(`started slot ${slot}:`))).toBe(false)
    expect(readFileSync(path.join(dev, 'active.json.damaged'))).toEqual(damagedBytes)
    expect(readJson<Pointer>(pointerFile(dev))).toMatchObject({ format: 1, slot, previous: null, confirmed: true, starts: 0 })
    expect(l.child.exitCode).toBeNull()
    return l
  }

  beforeAll(async () => {
    pub = path.join(temp(), 'signing-key.pub.pem')
    writeFileSync(pub, keys.publicPem)
    older = await fakeBundle(path.join(temp(), 'older'), READY_JS, keys.privatePem, 'older')
    newer = variant(older, path.join(temp(), 'newer'), keys.privatePem, { device: 'newer', buildTime: '2025-04-01T00:00:00.000Z' })
    third = variant(older, path.join(temp(), 'third'), keys.privatePem, { device: 'third', buildTime: '2025-05-01T00:00:00.000Z' })
  })

  it('truncated JSON, no state.json: the newer build (slot b) starts and reports ready; --check said so first; active.json rewritten, the damaged bytes kept', async () => {
    const dev = await device(older, newer)
    const text = readFileSync(pointerFile(dev))
    const cut = text.subarray(0, Math.floor(text.byteLength / 2))
    writeFileSync(pointerFile(dev), cut)

    const check = await launcherCheck(dev)
    expect(check.code).toBe(0)
    expect(check.slot).toMatchObject({ slot: 'b', device: 'newer', trial: false })
    expect(readFileSync(pointerFile(dev))).toEqual(cut) // --check changes nothing

    const l = await bootsFrom(dev, 'b', 'newer', cut)
    const w = warning(l, dev)
    expect(w.slot).toBe('b')
    expect(w.msg).toContain('is not readable JSON')
    expect(w.msg).toContain('starting slot b (the newer build), a new pointer written; its bytes are kept as active.json.damaged')
    await stop(l)
    // The next start reads the fresh pointer: no warning.
    const again = launch(dev)
    await again.waitFor('started slot b: newer 0.0.1')
    expect(again.lines.some((x) => x.includes('active.json.damaged'))).toBe(false)
    await stop(again)
  }, 30_000)

  it('garbage bytes, state.json naming slot a as last started and kept: slot a starts, though slot b is active in the pointer and newer', async () => {
    const dev = await device(older, newer, true)
    const garbage = Buffer.from([0x00, 0xff, 0x13, 0x37, 0xc3, 0x28, 0x0a])
    writeFileSync(pointerFile(dev), garbage)

    expect((await launcherCheck(dev)).slot).toMatchObject({ slot: 'a', device: 'older' })
    const l = await bootsFrom(dev, 'a', 'older', garbage)
    expect(warning(l, dev).msg).toContain('starting slot a (state.json names it as the slot last started)')
    await stop(l)
  }, 30_000)

  it('valid JSON but slot "c": not a boot pointer; slot a holds the newer build, so slot a starts; a kept slot that ends is restarted without a second warning', async () => {
    const dev = await device(newer, older)
    const wrong = Buffer.from(`${JSON.stringify({ format: 1, slot: 'c', previous: 'a', confirmed: true, starts: 0, switchedAt: '2025-01-01T00:00:00.000Z' })}\n`)
    writeFileSync(pointerFile(dev), wrong)

    const l = await bootsFrom(dev, 'a', 'newer', wrong)
    expect(warning(l, dev).msg).toContain(`${pointerFile(dev)} is not a boot pointer; starting slot a (the newer build)`)
    process.kill(startedPid(l.lines)!, 'SIGKILL')
    await l.waitFor('slot a was ended by SIGKILL; restarting it in 100 ms')
    await until(() => l.lines.filter((x) => x.includes('started slot a: newer 0.0.1')).length === 2, 10_000)
    warning(l, dev)
    await stop(l)
  }, 30_000)

  it('both slots damaged too: no bootable slot, said in one line with why, recorded in state.json, exit code 1', async () => {
    const dev = await device(older, newer)
    writeFileSync(pointerFile(dev), '{"format":1,"slot":')
    for (const slot of ['a', 'b']) writeFileSync(path.join(dev, 'slots', slot, 'device.mjs'), 'tampered\n')

    const check = await launcherCheck(dev)
    expect(check.code).toBe(1)
    expect(check.err).toContain(`launcher: no slot can start: ${pointerFile(dev)} is not readable JSON`)

    const l = launch(dev)
    expect((await l.exited).code).toBe(1)
    const fatal = l.lines.filter((x) => x.includes('no slot can start'))
    expect(fatal).toHaveLength(1)
    expect(JSON.parse(fatal[0]!)).toMatchObject({ level: 60, device: 'launcher' })
    expect(fatal[0]).toMatch(/is not readable JSON.*, and neither slot verifies \(HASH_MISMATCH: device\.mjs in slot a .*; HASH_MISMATCH: device\.mjs in slot b /)
    expect(l.lines.some((x) => x.includes('started slot'))).toBe(false)
    expect(readJson(path.join(dev, 'state.json'))).toMatchObject({ outcome: 'no-bootable-slot', slot: null })
  }, 30_000)

  it('outpost flash status shows the damaged pointer and the slot the launcher would start; outpost flash --to repairs it into the other slot, and the launcher starts the new bundle', async () => {
    const dev = await device(older, newer, true)
    writeFileSync(pointerFile(dev), '{"format":1,"slot":"b","previous":"a","confirmed":"yes","starts":0}\n')

    const status = await outpost(['flash', 'status', '--to', dev])
    expect(status.err).toBe('')
    expect(status.code).toBe(0)
    expect(status.out).toContain(`pointer:  damaged: ${pointerFile(dev)} is not a boot pointer; the launcher starts slot a (state.json names it as the slot last started) and replaces it`)
    expect(status.out).toMatch(/active: +slot a: older 0\.0\.1, built 2025-03-01T00:00:00\.000Z; recovered from the damaged active\.json/)
    const json = JSON.parse((await outpost(['flash', 'status', '--to', dev, '--json'])).out) as { damaged?: { problem: string }; pointer?: Pointer }
    expect(json.damaged?.problem).toBe(`${pointerFile(dev)} is not a boot pointer`)
    expect(json.pointer).toMatchObject({ slot: 'a', confirmed: true })
    expect(existsSync(path.join(dev, 'active.json.damaged'))).toBe(false) // status changes nothing

    // Slot a is the one the device starts: the new bundle goes into b, with a kept for rollback.
    const out = await flashed(third, dev)
    expect(out).toContain(`active.json was damaged (${pointerFile(dev)} is not a boot pointer): replaced, its bytes kept as ${path.join(dev, 'active.json.damaged')}`)
    expect(out).toContain('flashed into slot b, now active; slot a kept for rollback')
    expect(readFileSync(path.join(dev, 'active.json.damaged'), 'utf8')).toContain('"confirmed":"yes"')
    expect(readJson(pointerFile(dev))).toMatchObject({ format: 1, slot: 'b', previous: 'a', confirmed: false, starts: 0 })

    const l = launch(dev)
    await l.waitFor('slot b is ready: kept')
    expect(l.lines.some((x) => x.includes('started slot b: third 0.0.1'))).toBe(true)
    expect(l.lines.some((x) => x.includes('active.json.damaged'))).toBe(false)
    await stop(l)
    expect((await outpost(['flash', 'status', '--to', dev])).out).not.toContain('pointer:')
  }, 30_000)

  it('flash --to onto a damaged pointer with no slot that verifies: the bundle goes into slot a and starts', async () => {
    const dev = await device(older, newer)
    writeFileSync(pointerFile(dev), 'not json at all')
    rmSync(path.join(dev, 'slots', 'a'), { recursive: true })
    writeFileSync(path.join(dev, 'slots', 'b', 'device.mjs'), 'tampered\n')
    expect((await outpost(['flash', 'status', '--to', dev])).out).toMatch(/pointer: +damaged: .* is not readable JSON.*, and neither slot verifies .*; the launcher starts nothing: flash a bundle to repair it/)

    const out = await flashed(third, dev)
    expect(out).toContain('active.json was damaged')
    expect(out).toContain('flashed into slot a, now active; no previous slot (first flash)')
    const l = launch(dev)
    await l.waitFor('slot a is ready: kept')
    expect(l.lines.some((x) => x.includes('started slot a: third 0.0.1'))).toBe(true)
    await stop(l)
  }, 30_000)

  it('on a read-only disk: the launcher cannot replace the damaged pointer, says so, and starts the recovered slot from memory', async () => {
    const dir = path.join(temp(), 'sd')
    const sd = mountSmallDisk(dir, '8m')
    // This test is about a disk that refuses writes: it needs root to mount one.
    if (sd === undefined) throw new Error('cannot mount a tmpfs here (this test runs as root)')
    cleanup(() => sd.dispose())
    await flashed(older, dir, '--key', pub)
    await flashed(newer, dir)
    const cut = Buffer.from('{"format":1,"sl')
    writeFileSync(pointerFile(dir), cut)
    sd.readOnly()

    const l = launch(dir)
    await l.waitFor('started slot b: newer 0.0.1')
    await l.waitFor('"msg":"ready"')
    expect(warning(l, dir).msg).toContain('starting slot b (the newer build); its bytes are kept')
    expect(l.lines.some((x) => x.includes('cannot write active.json, going on without it: EROFS'))).toBe(true)
    expect(l.lines.some((x) => x.includes('cannot write active.json.damaged, going on without it: EROFS'))).toBe(true)
    expect(readFileSync(pointerFile(dir))).toEqual(cut)
    expect(l.child.exitCode).toBeNull()
    await stop(l)
  }, 30_000)
})
