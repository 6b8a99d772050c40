// `outpost flash --to` and the device's launcher on the disks a real SD card can be: too small for
// the next bundle, filling up while a bundle is copied, mounted read-only, full when the launcher
// must record a start, a file in a slot that cannot be removed, a truncated manifest, slots/ that is
// a file. Each device folder is a tmpfs of its own (root mounts it; unmounted after each test, also
// when it fails); the CLI and the launcher run as real processes. Whatever happens, the device
// starts a bundle (the old one until a flash completes), a failed flash says why in one typed line,
// and nothing it copied stays behind to eat the room.
import { execFileSync, spawn } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statfsSync, truncateSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { generateSigningKeys } from '../../build/index.js'
import { tempDirs } from '../build/build-helpers.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import type { TestProcess } from '../helpers/device-process.js'
import { CLEAN_GATEWAY_ENV, outpost } from '../helpers/gateway-cli.js'
import { fillDisk, mountSmallDisk, type SmallDisk } from '../helpers/small-disk.js'
import { fakeBundle, launcherCheck, readJson, snapshot, startLauncher } from './flash-helpers.js'

const temp = tempDirs('flash-disk')

/** A device that reports ready (over IPC and by its log line) and runs until it is stopped or its launcher goes away. */
const READY_JS = "process.send?.('outpost:ready')\nconsole.log(JSON.stringify({ level: 30, msg: 'ready' }))\nprocess.on('disconnect', () => process.exit(0))\nsetInterval(() => {}, 1000)\n"
/** A device that fails at every start, before it is ready. */
const CRASH_JS = "console.error('Error: no sensor on purpose')\nprocess.exit(3)\n"

const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

/** Fills what is left of the disk holding `dir` with one file; @returns the file (removing it gives the room back). */
function fill(dir: string): string {
  const file = fillDisk(path.join(dir, 'filler'))
  expect(statfsSync(dir).bavail).toBe(0)
  return file
}

describe('outpost flash and the launcher on a damaged or full device disk', () => {
  const keys = generateSigningKeys()
  const cleanup = cleanupAfterEach()
  let pub: string
  let one: string
  let two: string
  let crash: string

  /** A correctly signed bundle of device `name` with `padMiB` of data beside its entry. */
  async function bundle(name: string, padMiB: number, js = READY_JS): Promise<string> {
    const dir = path.join(temp(), name)
    mkdirSync(dir)
    if (padMiB > 0) writeFileSync(path.join(dir, 'pad.bin'), Buffer.alloc(Math.round(padMiB * 1024 * 1024), name.length))
    return fakeBundle(dir, js, keys.privatePem, name)
  }

  /** A tmpfs of `size` as the device's folder, unmounted after the test. */
  function disk(size: string): SmallDisk {
    const d = mountSmallDisk(path.join(temp(), 'sd'), size)
    // These tests are about a real disk filling up or turning read-only: they need root to mount one.
    if (d === undefined) throw new Error('cannot mount a tmpfs here (the disk tests run as root)')
    cleanup(() => d.dispose())
    return d
  }

  const flash = (bundleDir: string, dev: string, ...more: string[]): ReturnType<typeof outpost> => outpost(['flash', bundleDir, '--to', dev, '--change-device', ...more])
  const flashed = async (bundleDir: string, dev: string, ...more: string[]): Promise<string> => {
    const r = await flash(bundleDir, dev, ...more)
    expect(r.err).toBe('')
    expect(r.code).toBe(0)
    return r.out
  }
  const launch = (dev: string, env: Record<string, string> = {}): TestProcess => {
    const l = startLauncher(dev, env)
    cleanup(() => l.kill())
    return l
  }
  const stop = async (l: TestProcess): Promise<void> => {
    l.child.kill('SIGTERM')
    expect((await l.exited).code).toBe(0)
  }
  const checked = async (dev: string): Promise<Record<string, unknown> | undefined> => (await launcherCheck(dev)).slot as Record<string, unknown> | undefined
  const tmpFiles = (dev: string): string[] => readdirSync(dev).filter((n) => n.endsWith('.tmp'))

  beforeAll(async () => {
    pub = path.join(temp(), 'signing-key.pub.pem')
    writeFileSync(pub, keys.publicPem)
    one = await bundle('one', 1.6)
    two = await bundle('two', 1.6)
    crash = await bundle('crash', 0, CRASH_JS)
  })

  it('a bundle the disk has no room for: refused before anything is written, in one STORE_FULL line; the old bundle still starts; with room made it flashes, and a third flash takes the room of the slot it replaces', async () => {
    const dev = disk('4m').dir
    mkdirSync(path.join(dev, 'data'))
    writeFileSync(path.join(dev, 'data', 'old.log'), Buffer.alloc(1024 * 1024, 1))
    await flashed(one, dev, '--key', pub)
    const before = snapshot(dev)

    const r = await flash(two, dev)
    expect(r.code).toBe(1)
    expect(r.out).toBe('')
    expect(r.err).toMatch(new RegExp(`^outpost: STORE_FULL: the device's disk at ${esc(dev)} is full: two 0\\.0\\.1 needs 1\\.\\d MB and 1\\.\\d MB is free; free 0\\.\\d MB more on it and flash again; nothing was written to ${esc(dev)}\\n$`))
    expect(snapshot(dev)).toEqual(before)
    expect(await checked(dev)).toMatchObject({ slot: 'a', device: 'one', trial: true })

    rmSync(path.join(dev, 'data', 'old.log'))
    expect(await flashed(two, dev)).toContain('flashed into slot b, now active; slot a kept for rollback')
    // Room for two bundles, not three: the next one goes where slot a's was.
    expect(statfsSync(dev).bavail * statfsSync(dev).bsize).toBeLessThan(1.6 * 1024 * 1024)
    expect(await flashed(one, dev)).toContain('flashed into slot a, now active; slot b kept for rollback')
    expect(readdirSync(path.join(dev, 'slots')).sort()).toEqual(['a', 'b'])
    expect(await checked(dev)).toMatchObject({ slot: 'a', device: 'one', trial: true })
  }, 30_000)

  it('a disk that fills up while the bundle is copied: one STORE_FULL line, what was copied removed, the pointer untouched; with room again the same flash goes through', async () => {
    const dev = disk('8m').dir
    await flashed(one, dev, '--key', pub)
    const pointer = readFileSync(path.join(dev, 'active.json'), 'utf8')

    const child = spawn(process.execPath, ['bin/outpost.js', 'flash', two, '--to', dev, '--change-device'], {
      env: { ...process.env, ...CLEAN_GATEWAY_ENV, OUTPOST_FLASH_STEP_DELAY_MS: '300' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    cleanup(() => child.kill('SIGKILL'))
    let err = ''
    let out = ''
    child.stderr.setEncoding('utf8').on('data', (c: string) => (err += c))
    child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c))
    const exited = new Promise<number | null>((r) => child.once('close', (code) => r(code)))
    let filler: string | undefined
    // Another writer takes the last of the room just as the copy begins.
    const filled = (async () => {
      while (!err.includes('flash step: copy manifest.json\n') && child.exitCode === null) await new Promise((r) => setTimeout(r, 5))
      filler = fill(dev)
    })()
    expect(await exited).toBe(1)
    await filled
    expect(out).toBe('')
    const said = err.split('\n').filter((l) => l !== '' && !l.startsWith('flash step: '))
    expect(said).toEqual([expect.stringMatching(new RegExp(`^outpost: STORE_FULL: the device's disk at ${esc(dev)} filled up while copying (manifest\\.json|manifest\\.sig|device\\.mjs|pad\\.bin) \\(ENOSPC: no space left on device, write\\); what was copied is removed and the device still starts slot a; free room on it and flash again$`))])
    expect(readdirSync(path.join(dev, 'slots'))).toEqual(['a'])
    expect(readFileSync(path.join(dev, 'active.json'), 'utf8')).toBe(pointer)
    expect(tmpFiles(dev)).toEqual([])
    expect(await checked(dev)).toMatchObject({ slot: 'a', device: 'one' })

    rmSync(filler!)
    expect(await flashed(two, dev)).toContain('flashed into slot b, now active; slot a kept for rollback')
    expect(readdirSync(path.join(dev, 'slots')).sort()).toEqual(['a', 'b'])
    expect(await checked(dev)).toMatchObject({ slot: 'b', device: 'two', trial: true })
  }, 30_000)

  it('a read-only device folder: one STORE_READ_ONLY line and nothing changed; the launcher still starts the bundle there, though it can record nothing', async () => {
    const sd = disk('8m')
    const dev = sd.dir
    await flashed(one, dev, '--key', pub)
    const before = snapshot(dev)
    sd.readOnly()

    const r = await flash(two, dev)
    expect(r.code).toBe(1)
    expect(r.out).toBe('')
    expect(r.err).toMatch(new RegExp(`^outpost: STORE_READ_ONLY: the device's filesystem at ${esc(dev)} is read-only \\(EROFS: read-only file system, access '${esc(dev)}'\\); mount it read-write .*; nothing was written to ${esc(dev)}\\n$`))
    expect(snapshot(dev)).toEqual(before)
    expect((await outpost(['flash', 'status', '--to', dev])).out).toMatch(/active: +slot a: one 0\.0\.1/)

    // Never started before: device.json to write, the start to count, the slot to keep. It can do none of it, and runs the device.
    const l = launch(dev)
    await l.waitFor('slot a is ready: kept')
    expect(l.lines.filter((x) => x.includes('cannot write device.json, going on without it: EROFS'))).toHaveLength(1)
    expect(l.lines.filter((x) => x.includes('cannot write active.json, going on without it: EROFS'))).toHaveLength(2)
    expect(l.lines.some((x) => x.includes('"msg":"ready"') && !x.includes('launcher'))).toBe(true)
    expect(l.child.exitCode).toBeNull()
    await stop(l)
    expect(snapshot(dev)).toEqual(before)
  }, 30_000)

  it('the launcher on a full disk: it starts a new bundle it cannot count or keep on disk, rolls one that fails back to the previous slot in memory, and never stops; with room again it records what it does', async () => {
    const dev = disk('8m').dir
    await flashed(one, dev, '--key', pub)
    let filler = fill(dev)
    const pointer = readFileSync(path.join(dev, 'active.json'), 'utf8')
    let l = launch(dev)
    await l.waitFor('slot a is ready: kept')
    expect(l.lines.some((x) => x.includes('cannot write device.json, going on without it: ENOSPC'))).toBe(true)
    expect(l.lines.some((x) => x.includes('cannot write active.json, going on without it: ENOSPC'))).toBe(true)
    expect(l.lines.some((x) => x.includes('cannot write state.json, going on without it: ENOSPC'))).toBe(true)
    expect(readFileSync(path.join(dev, 'active.json'), 'utf8')).toBe(pointer)
    expect(existsSync(path.join(dev, 'state.json'))).toBe(false)
    expect(tmpFiles(dev)).toEqual([])
    await stop(l)

    // With room the slot is kept for good; then a bundle that fails at every start, and the disk full again.
    rmSync(filler)
    l = launch(dev)
    await l.waitFor('slot a is ready: kept')
    await stop(l)
    expect(readJson(path.join(dev, 'active.json'))).toMatchObject({ slot: 'a', confirmed: true })
    expect(await flashed(crash, dev)).toContain('flashed into slot b, now active; slot a kept for rollback')
    filler = fill(dev)
    const trial = readFileSync(path.join(dev, 'active.json'), 'utf8')
    const state = readFileSync(path.join(dev, 'state.json'), 'utf8')
    const env = { OUTPOST_LAUNCHER_TRIES: '2', OUTPOST_LAUNCHER_RESTART_MS: '100' }
    l = launch(dev, env)
    await l.waitFor('rolled back from slot b to slot a: slot b exited with code 3: Error: no sensor on purpose before it was ready, 2 starts in a row')
    await l.waitFor('started slot a: one 0.0.1')
    await new Promise((r) => setTimeout(r, 500))
    expect(l.lines.filter((x) => x.includes('started slot b: crash 0.0.1'))).toHaveLength(2)
    expect(l.lines.filter((x) => x.includes('started slot a'))).toHaveLength(1)
    expect(l.child.exitCode).toBeNull()
    expect(readFileSync(path.join(dev, 'active.json'), 'utf8')).toBe(trial)
    expect(readFileSync(path.join(dev, 'state.json'), 'utf8')).toBe(state)
    expect(tmpFiles(dev)).toEqual([])
    await stop(l)

    // The starts it counted in memory are gone with it: with room, the next launcher tries slot b anew, and records the rollback.
    rmSync(filler)
    l = launch(dev, env)
    await l.waitFor('started slot a: one 0.0.1')
    await stop(l)
    expect(readJson(path.join(dev, 'active.json'))).toMatchObject({ slot: 'a', previous: null, confirmed: true })
    expect(readJson(path.join(dev, 'state.json'))).toMatchObject({ outcome: 'rolled-back', slot: 'a', from: { slot: 'b', device: 'crash' } })
  }, 40_000)

  it('a file in the inactive slot that cannot be removed (chattr +i): one line naming it, before anything is copied; the device still starts its slot; once it can be removed the flash goes through', async () => {
    const dev = disk('16m').dir
    await flashed(one, dev, '--key', pub)
    await flashed(two, dev)
    const stuck = path.join(dev, 'slots', 'a', 'pad.bin')
    execFileSync('chattr', ['+i', stuck])
    cleanup(() => {
      if (existsSync(stuck)) execFileSync('chattr', ['-i', stuck])
    })

    const r = await flash(one, dev)
    expect(r.code).toBe(1)
    expect(r.err).toMatch(new RegExp(`^outpost: STORE_READ_ONLY: the device's filesystem at ${esc(dev)} refused a write while removing the old bundle in slot a: ${esc(stuck)} cannot be removed \\(is it immutable\\? .*\\); the device still starts slot b\\n$`))
    expect(readdirSync(path.join(dev, 'slots')).sort()).toEqual(['a', 'b'])
    expect(await checked(dev)).toMatchObject({ slot: 'b', device: 'two' })

    execFileSync('chattr', ['-i', stuck])
    expect(await flashed(one, dev)).toContain('flashed into slot a, now active')
    expect(readdirSync(path.join(dev, 'slots')).sort()).toEqual(['a', 'b'])
    expect(await checked(dev)).toMatchObject({ slot: 'a', device: 'one' })
  }, 30_000)

  it('a truncated manifest: in a bundle, refused; in the active slot, the launcher goes back to the previous slot and says why; slots/ that is a file: one line, nothing written', async () => {
    const dev = disk('16m').dir
    await flashed(one, dev, '--key', pub)
    await flashed(two, dev)

    const cut = path.join(temp(), 'cut')
    execFileSync('cp', ['-r', one, cut])
    truncateSync(path.join(cut, 'manifest.json'), 100)
    const before = snapshot(dev)
    const refused = await flash(cut, dev)
    expect(refused.code).toBe(1)
    expect(refused.err).toMatch(new RegExp(`^outpost: BAD_SIGNATURE: .*; nothing was written to ${esc(dev)}\\n$`))
    expect(snapshot(dev)).toEqual(before)

    truncateSync(path.join(dev, 'slots', 'b', 'manifest.json'), 100)
    expect((await outpost(['flash', 'status', '--to', dev])).out).toMatch(/active: +slot b: .* does not start: BAD_SIGNATURE: /)
    const l = launch(dev)
    await l.waitFor('rolled back from slot b to slot a: BAD_SIGNATURE: the manifest of slot b does not verify')
    await l.waitFor('slot a: one 0.0.1')
    expect(l.child.exitCode).toBeNull()
    await stop(l)
    expect(readJson(path.join(dev, 'state.json'))).toMatchObject({ outcome: 'rolled-back', slot: 'a', from: { slot: 'b' }, reason: 'BAD_SIGNATURE: the manifest of slot b does not verify' })

    rmSync(path.join(dev, 'slots'), { recursive: true })
    writeFileSync(path.join(dev, 'slots'), 'not a folder')
    const damaged = snapshot(dev)
    const r = await flash(two, dev)
    expect(r.code).toBe(1)
    expect(r.err).toMatch(new RegExp(`^outpost: STORE_FAILED: ${esc(dev)}/slots is a file, not the folder of the device's slots .*; nothing was written to ${esc(dev)}\\n$`))
    expect(snapshot(dev)).toEqual(damaged)
  }, 30_000)
})
