// Found from outside (helper): what is in a bundle or a slot is not always a file, and a device
// folder is not always flashed by one process at a time.
// - A file the manifest lists that is a FIFO (its open waits for a writer), a link to /dev/zero
//   (a read that never ends) or a folder: `outpost flash --to` waited for ever (or grew to GBs),
//   and a FIFO in a slot kept the launcher from starting either slot, and from stopping on SIGTERM.
//   Now each is refused unread, with HASH_MISMATCH, and the launcher falls back to the other slot.
// - manifest.sig holding JSON that is no object: a one-line BAD_SIGNATURE, not a TypeError.
// - Two flashes of one folder at once filled the same slots/.incoming and removed each other's
//   work; both could say they succeeded with one bundle on neither slot. Now a flash marks the
//   folder (flash.lock): a second one is refused with STORE_IN_USE while the first runs; a mark
//   left by a process that is gone is taken over.
// - Another device's bundle onto a device's folder: refused unless --change-device.
import { spawn } from 'node:child_process'
import { createPrivateKey } from 'node:crypto'
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { execFileSync } from 'node:child_process'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildDevice, generateSigningKeys, MANIFEST_FILE, SIGNATURE_FILE } from '../../build/index.js'
import { outpost } from '../helpers/gateway-cli.js'
import { tempDirs } from '../build/build-helpers.js'
import { launcherCheck, readJson, snapshot, variant } from './flash-helpers.js'

const temp = tempDirs('flash-special')

describe('flashing files that are not files, and two flashes at once', () => {
  const keys = generateSigningKeys()
  let v1: string
  let v2: string
  let pub: string
  const sleepers: { kill(): void }[] = []

  beforeAll(async () => {
    v1 = (await buildDevice('thermo', { outDir: temp(), signingKey: createPrivateKey(keys.privatePem), buildTime: '2025-01-01T00:00:00.000Z' })).dir
    v2 = variant(v1, path.join(temp(), 'thermo'), keys.privatePem, { version: '0.2.0', buildTime: '2025-02-01T00:00:00.000Z' })
    pub = path.join(temp(), 'signing-key.pub.pem')
    writeFileSync(pub, keys.publicPem)
  }, 60_000)

  afterAll(() => {
    for (const s of sleepers) s.kill()
  })

  /** A device folder with v1 in slot a and v2 in slot b (active). */
  const twoSlots = async (): Promise<string> => {
    const dev = temp()
    for (const bundle of [v1, v2]) expect((await outpost(['flash', bundle, '--to', dev, '--key', pub])).code).toBe(0)
    expect(readJson(path.join(dev, 'active.json'))).toMatchObject({ slot: 'b', previous: 'a' })
    return dev
  }

  it('refuses a bundle whose listed file is a FIFO, a link to /dev/zero or a folder, and a signature file that is no object: one line each, unread, nothing written', async () => {
    const dev = temp()
    expect((await outpost(['flash', v1, '--to', dev, '--key', pub])).code).toBe(0)
    const before = snapshot(dev)
    const copy = (change: (dir: string) => void): string => {
      const dir = path.join(temp(), 'thermo')
      cpSync(v1, dir, { recursive: true })
      change(dir)
      return dir
    }
    const map = 'thermo.code.cjs.map'
    const cases: [string, string, RegExp][] = [
      [copy((d) => (rmSync(path.join(d, map)), execFileSync('mkfifo', [path.join(d, map)]))), 'HASH_MISMATCH', /thermo\.code\.cjs\.map in .* is not the file the manifest lists: thermo\.code\.cjs\.map is not a regular file/],
      [copy((d) => (rmSync(path.join(d, map)), symlinkSync('/dev/zero', path.join(d, map)))), 'HASH_MISMATCH', /thermo\.code\.cjs\.map is not a regular file/],
      [copy((d) => (rmSync(path.join(d, map)), mkdirSync(path.join(d, map)))), 'HASH_MISMATCH', /thermo\.code\.cjs\.map is not a regular file/],
      // Larger than listed (sparse: 3 GB that take no room): refused unread, named.
      [copy((d) => execFileSync('truncate', ['-s', '3G', path.join(d, map)])), 'HASH_MISMATCH', /thermo\.code\.cjs\.map is larger than \d+ bytes \(3221225472\)/],
      [copy((d) => writeFileSync(path.join(d, SIGNATURE_FILE), 'null')), 'BAD_SIGNATURE', /manifest\.sig is not a signature file \(not a JSON object\)/],
      [copy((d) => writeFileSync(path.join(d, SIGNATURE_FILE), JSON.stringify({ algorithm: 'ed25519', keyId: 7, signature: 'x' }))), 'BAD_SIGNATURE', /manifest\.sig is not a signature file \(keyId is not a string\)/],
    ]
    for (const [bundle, code, message] of cases) {
      const r = await outpost(['flash', bundle, '--to', dev], {}, 15_000)
      expect(r.code, `${code} ${message.source}: ${r.err}`).toBe(1)
      expect(r.err).toMatch(new RegExp(`^outpost: ${code}: .*${message.source}.*; nothing was written to ${dev}\\n$`))
    }
    expect(snapshot(dev)).toEqual(before)
  }, 120_000)

  // Found from outside: a thermo's folder took a display's bundle without a word (the device became a display).
  it("another device's bundle is refused unless --change-device is given: one line, nothing written; with it, flashed", async () => {
    const dev = temp()
    expect((await outpost(['flash', v1, '--to', dev, '--key', pub])).code).toBe(0)
    const display = (await buildDevice('display', { outDir: temp(), signingKey: createPrivateKey(keys.privatePem), buildTime: '2025-03-01T00:00:00.000Z' })).dir
    const before = snapshot(dev)
    const refused = await outpost(['flash', display, '--to', dev])
    expect([refused.code, refused.err]).toEqual([2, `outpost: BAD_ARGUMENT: the device at ${dev} runs the thermo bundle and this one is display's: give --change-device to make it a display; nothing was written to ${dev}\n`])
    expect(snapshot(dev)).toEqual(before)
    const changed = await outpost(['flash', display, '--to', dev, '--change-device'])
    expect(changed.code, changed.err).toBe(0)
    expect(readJson(path.join(dev, 'slots', 'b', MANIFEST_FILE))).toMatchObject({ device: 'display' })
  }, 60_000)

  it('a FIFO in the active slot: the launcher and flash status do not wait on it; the launcher starts the previous slot', async () => {
    const dev = await twoSlots()
    const file = path.join(dev, 'slots', 'b', 'thermo.code.cjs.map')
    rmSync(file)
    execFileSync('mkfifo', [file])
    const check = await launcherCheck(dev)
    expect(check.code, check.err).toBe(0)
    expect(check.slot).toMatchObject({ slot: 'a', rollback: { from: 'b' } })
    expect(check.slot!.rollback!.reason).toMatch(/HASH_MISMATCH: slot b has a file that is not the one its manifest lists: thermo\.code\.cjs\.map is not a regular file/)
    const status = await outpost(['flash', 'status', '--to', dev], {}, 15_000)
    expect(status.code, status.err).toBe(0)
    expect(status.out).toMatch(/thermo\.code\.cjs\.map is not a regular file/)
  }, 60_000)

  it('a second flash while one runs is refused with STORE_IN_USE, nothing changed; a mark left by a process that is gone is taken over', async () => {
    const dev = await twoSlots()
    const lock = path.join(dev, 'flash.lock')
    const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
    // A flash that runs: a live process of this boot holds the mark.
    const live = spawn('sleep', ['60'], { stdio: 'ignore' })
    sleepers.push(live)
    writeFileSync(lock, `${live.pid} ${boot}\n`)
    const before = snapshot(dev)
    const refused = await outpost(['flash', v1, '--to', dev])
    expect(refused.code).toBe(1)
    expect(refused.err).toBe(`outpost: STORE_IN_USE: the device is being flashed by another process (pid ${live.pid}); nothing was changed: flash again once it has ended (a flash.lock left with no flash running may be removed)\n`)
    expect(snapshot(dev)).toEqual(before)
    // A flash killed with -9 (its process gone), or one of an earlier boot (a power cut): taken over, and removed after.
    for (const stale of [`${live.pid} another-boot\n`, '999999999 ' + boot + '\n', 'garbage']) {
      writeFileSync(lock, stale)
      const r = await outpost(['flash', v1, '--to', dev])
      expect(r.code, `${stale}: ${r.err}`).toBe(0)
      expect(existsSync(lock)).toBe(false)
    }
    // An empty mark, or one cut short: a flash that has made it and not yet written its pid (taken
    // as left over, it let two flashes run at once). Held while new; taken over once old.
    for (const writing of ['', `${live.pid}`]) {
      writeFileSync(lock, writing)
      const held = await outpost(['flash', v1, '--to', dev])
      expect(held.code, held.err).toBe(1)
      expect(held.err).toMatch(/^outpost: STORE_IN_USE: the device is being flashed by another process/)
      utimesSync(lock, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000))
      const r = await outpost(['flash', v1, '--to', dev])
      expect(r.code, r.err).toBe(0)
      expect(existsSync(lock)).toBe(false)
    }
  }, 60_000)

  it('two flashes of one folder at once: each either succeeds with its bundle in a slot, or is refused with STORE_IN_USE; the device always verifies', async () => {
    const dev = await twoSlots()
    for (let round = 0; round < 4; round++) {
      const [a, b] = await Promise.all([outpost(['flash', v1, '--to', dev]), outpost(['flash', v2, '--to', dev])])
      const versions = (['a', 'b'] as const).map((s) => (readJson<{ version: string }>(path.join(dev, 'slots', s, MANIFEST_FILE))).version)
      for (const [r, version] of [[a, '0.1.0'], [b, '0.2.0']] as const) {
        if (r.code === 0) expect(versions, `round ${round}: ${r.out}`).toContain(version)
        else expect(r.err, `round ${round}`).toMatch(/^outpost: STORE_IN_USE: the device is being flashed by another process/)
      }
      expect(a.code === 0 || b.code === 0, `round ${round}: ${a.err} ${b.err}`).toBe(true)
      const check = await launcherCheck(dev)
      expect(check.code, check.err).toBe(0)
      expect(check.slot?.rollback, `round ${round}`).toBeUndefined()
      expect(existsSync(path.join(dev, 'flash.lock'))).toBe(false)
    }
  }, 120_000)
})
