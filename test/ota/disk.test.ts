// Over the air onto a device whose own disk is in trouble, as a device in the field meets it: its
// folder (slots, data, ota staging) on a small tmpfs of its own, a real gateway, the device run by
// its launcher as a process of its own, `outpost flash … --device … --gateway …` as a user runs
// it. The disk fills in the middle of a transfer (the device's data grows) or is full at commit;
// it turns read-only in the middle of a transfer or at commit; a sender floods chunks or begins
// and abandons transfers. Each time: a typed error that reaches the CLI as one line naming the
// disk, nothing switched, the device keeps running its bundle and serving commands (its process
// never dies), and the staging area neither keeps the space of a dead transfer nor piles up.
import { execFileSync } from 'node:child_process'
import { createHash, createPrivateKey } from 'node:crypto'
import { existsSync, readdirSync, readFileSync, rmSync, statfsSync, statSync } from 'node:fs'
import path from 'node:path'
import { pino } from 'pino'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import { buildDevice, generateSigningKeys } from '../../build/index.js'
import { flashBundle } from '../../build/flash.js'
import { otaCaller, readLocalBundle, type LocalBundle, type OtaCall, type OtaStatus, type TransferView } from '../../build/ota.js'
import { defaultGatewayConfig } from '../../gateway/config/gateway-config.js'
import { startGateway, type Gateway } from '../../gateway/index.js'
import { tempDirs } from '../build/build-helpers.js'
import { startLauncher } from '../flash/flash-helpers.js'
import { caught as caughtAny } from '../helpers/caught.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import type { TestProcess } from '../helpers/device-process.js'
import { fillDisk, mountSmallDisk, type SmallDisk } from '../helpers/small-disk.js'
import { cli, otaArgs, readJson, startCli, TOKEN, variant, type OtaRig } from './ota-helpers.js'

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')
const caught = async (p: Promise<unknown>): Promise<{ code: string; message: string }> => (await caughtAny(p)) as { code: string; message: string }
const free = (dir: string): number => {
  const s = statfsSync(dir)
  return s.bavail * s.bsize
}
/** Remounts the disk at `dir` read-only or read-write; a file open for writing at that moment (a chunk being written) makes it busy for a moment. */
function remount(dir: string, mode: 'ro' | 'rw'): void {
  for (let tries = 0; ; tries++) {
    try {
      execFileSync('mount', ['-o', `remount,${mode}`, dir], { stdio: 'ignore' })
      return
    } catch (err) {
      if (tries >= 200) throw err
      execFileSync('sleep', ['0.01'])
    }
  }
}

/** What is under `dir`, recursively: relative paths. */
const listing = (dir: string): string[] => !existsSync(dir) ? [] : readdirSync(dir, { recursive: true, encoding: 'utf8' }).sort()

interface DiskRig extends Pick<OtaRig, 'dev' | 'http' | 'deviceId' | 'call' | 'status'> {
  disk: SmallDisk
  gateway: Gateway
  launcher: TestProcess
}

describe('over the air onto a device whose disk is full or read-only', () => {
  const temp = tempDirs('otadisk')
  const cleanup = cleanupAfterEach()
  let keys: ReturnType<typeof generateSigningKeys>
  let thermo: string
  let v2: LocalBundle
  let n = 0

  beforeAll(async () => {
    keys = generateSigningKeys()
    thermo = (await buildDevice('thermo', { outDir: temp(), signingKey: createPrivateKey(keys.privatePem), buildTime: '2025-01-01T00:00:00.000Z' })).dir
    v2 = await readLocalBundle(variant(thermo, path.join(temp(), 'thermo'), keys.privatePem, { version: '0.2.0', buildTime: '2025-02-01T00:00:00.000Z' }))
  }, 60_000)

  /** The thermo flashed onto a tmpfs of `size` of its own, run by its launcher against a new gateway; everything undone after the test, whatever happened. */
  async function diskRig(size: string, opts: { dataDir?: string } = {}): Promise<DiskRig> {
    const dev = path.join(temp(), 'sd')
    const disk = mountSmallDisk(dev, size)
    if (disk === undefined) throw new Error('these tests mount a tmpfs: run them as root')
    cleanup(() => {
      // Read-write again first: a disk left read-only by a failed test still unmounts.
      try {
        remount(dev, 'rw')
      } catch {
        // Already unmounted.
      }
      disk.dispose()
    })
    await flashBundle(thermo, { to: dev, key: keys.publicPem })
    const config = defaultGatewayConfig()
    config.http = { enabled: true, host: '127.0.0.1', port: 0, token: TOKEN }
    config.auth.enabled = false
    const gateway = await startGateway({ config, port: 0, logger: pino({ level: 'silent' }) })
    cleanup(() => gateway.close())
    const deviceId = `thermo-disk${++n}`
    const launcher = startLauncher(dev, { OUTPOST_MQTT_URL: gateway.broker.url, OUTPOST_DEVICE_ID: deviceId, OUTPOST_SAMPLE_MS: '60000', OUTPOST_LAUNCHER_READY_MS: '8000', ...(opts.dataDir === undefined ? {} : { OUTPOST_DATA_DIR: opts.dataDir }) })
    cleanup(() => launcher.kill('SIGTERM'))
    const http = gateway.http!.url
    const call = otaCaller({ gateway: http, device: deviceId, token: TOKEN })
    const status = async (): Promise<OtaStatus> => {
      const end = Date.now() + 30_000
      for (;;) {
        const s = await call<OtaStatus>('status', {}).catch((err: unknown) => {
          if (Date.now() > end) throw err
          return undefined
        })
        if (s !== undefined) return s
        await new Promise((r) => setTimeout(r, 100))
      }
    }
    await launcher.waitFor('is ready: kept')
    await status()
    return { disk, dev, gateway, http, deviceId, launcher, call, status }
  }

  /** `outpost flash` of `bundle` to the rig's device. */
  const args = (rig: DiskRig, bundle: string, extra: string[] = []): string[] => otaArgs(rig as unknown as OtaRig, bundle, extra)
  /** The thermo's read command, through the gateway: the device's answer. */
  const readThermo = async (rig: DiskRig): Promise<{ result?: unknown; error?: { code: string } }> => {
    const res = await fetch(`${rig.http}/devices/${rig.deviceId}/commands/thermo/1/read`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` }, body: '{"unit":"C"}' })
    return (await res.json()) as { result?: unknown; error?: { code: string } }
  }
  /**
   * The device still runs slot a (0.1.0), its pointer untouched, no slot b, its one process alive
   * all along, and it serves commands: a reading, or on a disk still full, STORE_FULL (its inbox
   * cannot record the command; README, "When storage fails").
   */
  const unchanged = async (rig: DiskRig, diskFull = false): Promise<OtaStatus> => {
    const s = await rig.status()
    expect(s.running).toMatchObject({ slot: 'a', version: '0.1.0' })
    expect(s.committed).toBeNull()
    expect(readJson(path.join(rig.dev, 'active.json'))).toMatchObject({ slot: 'a', previous: null, confirmed: true })
    expect(existsSync(path.join(rig.dev, 'slots', 'b'))).toBe(false)
    expect(rig.launcher.child.exitCode).toBeNull()
    expect(rig.launcher.lines.filter((l) => l.includes('started slot'))).toHaveLength(1)
    // The device may say that its disk is full (a sample that falls due then cannot be stored:
    // "queue store commit failed", level 50, a CI run); nothing else of that level.
    expect(rig.launcher.lines.filter((l) => /restarting it in|was not ready in time|"level":(50|60)/.test(l) && !/SQLITE_FULL|disk is full/.test(l))).toEqual([])
    const read = await readThermo(rig)
    if (diskFull) expect(read).toMatchObject({ error: { code: 'STORE_FULL' } })
    else expect(read).toMatchObject({ result: { unit: 'C' } })
    return s
  }
  const begin = (rig: DiskRig, chunkBytes = 64 * 1024): Promise<TransferView> => rig.call<TransferView>('begin', {
    bundleId: v2.bundleId, manifest: v2.manifestText, signature: v2.signatureText, chunkBytes, files: v2.files.map((f) => ({ name: f.name, size: f.size, sha256: f.sha256 })),
  })
  const sendChunk = (rig: DiskRig, file: string, index: number, chunkBytes = 64 * 1024): Promise<{ written: boolean }> => {
    const data = v2.files.find((f) => f.name === file)!.bytes.subarray(index * chunkBytes, (index + 1) * chunkBytes)
    return rig.call('chunk', { bundleId: v2.bundleId, file, index, data: data.toString('base64'), sha256: sha256(data) })
  }
  /** The last line the CLI wrote on stderr, and that it is the only line saying what failed (no stack). */
  const lastLine = (err: string): string => {
    expect(err).not.toMatch(/\n\s+at /)
    return err.trim().split('\n').at(-1)!
  }
  /** Starts `outpost flash` slowed down and waits until about a third of the chunks arrived. */
  async function flashUntilAThird(rig: DiskRig): Promise<ReturnType<typeof startCli>> {
    const run = startCli(args(rig, v2.dir, ['--chunk-kb', '16']), { OUTPOST_OTA_CHUNK_DELAY_MS: '20' })
    const end = Date.now() + 30_000
    while (!/\] [3-9]\d%/.test(run.out()) && Date.now() < end) await new Promise((r) => setTimeout(r, 20))
    expect(run.out()).toMatch(/\] [3-9]\d%/)
    return run
  }

  it('the disk is too small for the bundle: refused at begin with STORE_FULL, also when the bytes fit but the disk\'s blocks and bookkeeping do not', async () => {
    // The device's database elsewhere: its write-ahead log grows by every command, and the free space is measured here to the block.
    const rig = await diskRig('7m', { dataDir: temp() })
    const filler = path.join(rig.dev, 'filler.bin')
    // Fewer bytes free than the bundle has.
    fillDisk(filler, v2.bytes - 64 * 1024)
    let r = await cli(args(rig, v2.dir))
    expect(r.code, r.out + r.err).toBe(1)
    expect(lastLine(r.err)).toMatch(new RegExp(`^outpost: STORE_FULL: bundle ${v2.bundleId} needs \\d+ bytes; \\d+ are free on the device`))
    // As many bytes free as the bundle has, but its files take whole blocks, and the transfer its bookkeeping.
    rmSync(filler)
    fillDisk(filler, v2.bytes + 8 * 1024)
    r = await cli(args(rig, v2.dir))
    expect(r.code, r.out + r.err).toBe(1)
    expect(lastLine(r.err)).toMatch(new RegExp(`^outpost: STORE_FULL: bundle ${v2.bundleId} needs \\d+ bytes; \\d+ are free on the device`))
    expect(r.out).not.toContain('chunks sent')
    let s = await unchanged(rig)
    expect(s.transfer).toBeNull()
    expect(listing(path.join(rig.dev, 'ota'))).toEqual([])

    // Room for the bundle; then the disk fills to less than a chunk: the disk takes part of the chunk
    // without an error, and refuses the rest. The chunk is refused, not taken as written.
    rmSync(filler)
    const t = await begin(rig, 16 * 1024)
    for (let i = 0; i < 3; i++) expect(await sendChunk(rig, 'better_sqlite3.node', i, 16 * 1024)).toMatchObject({ written: true })
    fillDisk(filler, 8 * 1024)
    expect(free(rig.dev)).toBeGreaterThan(0)
    const err = await caught(sendChunk(rig, 'better_sqlite3.node', 3, 16 * 1024))
    expect(err.code).toBe('STORE_FULL')
    expect(err.message).toMatch(/^the device's disk is full: chunk 3 of better_sqlite3\.node could not be written; the transfer was discarded/)
    s = await unchanged(rig)
    expect(s.transfer).toBeNull()
    expect(t.missing).toBeGreaterThan(3)
    expect(listing(path.join(rig.dev, 'ota'))).toEqual([])
  }, 60_000)

  it('the disk fills in the middle of a transfer: the chunk is refused with STORE_FULL, one line at the CLI, the transfer discarded and its space given back; with room again, the same command flashes it', async () => {
    // Room for slot a, the transfer, and the device's database, whose write-ahead log grows by each command it serves.
    const rig = await diskRig('9m')
    const run = await flashUntilAThird(rig)
    // The device's own data grows until the disk is full.
    const filler = path.join(rig.dev, 'data', 'filler.bin')
    fillDisk(filler)
    const r = await run.done
    expect(r.code, r.out + r.err).toBe(1)
    expect(lastLine(r.err)).toMatch(/^outpost: STORE_FULL: the device's disk is full: chunk \d+ of \S+ could not be written; the transfer was discarded to give its space back \(nothing was switched: the device keeps running slot a\); free room on the device and flash again$/)
    // Nothing kept of the transfer: the staging area is empty and its space free again.
    const s = await unchanged(rig)
    expect(s.transfer).toBeNull()
    expect(listing(path.join(rig.dev, 'ota'))).toEqual([])
    expect(free(rig.dev)).toBeGreaterThan(v2.bytes / 4)
    // A chunk sent for the discarded transfer says why it is gone, not just that it is unknown.
    const late = await caught(sendChunk(rig, 'thermo.code.cjs', 0))
    expect(late.code).toBe('STORE_FULL')
    // Room again: the same command flashes the bundle.
    rmSync(filler)
    const again = await cli(args(rig, v2.dir))
    expect(again.err, again.out).toBe('')
    expect(again.code).toBe(0)
    expect((await rig.status()).running).toMatchObject({ slot: 'b', version: '0.2.0' })
  }, 90_000)

  it('the disk is full at commit: STORE_FULL, nothing switched, the received bundle kept whole; once there is room the same command commits it without sending a chunk again', async () => {
    const rig = await diskRig('7m')
    const t = await begin(rig)
    for (const f of t.files) for (let i = 0; i < f.chunks; i++) await sendChunk(rig, f.name, i)
    expect((await rig.status()).transfer!.missing).toBe(0)
    const filler = path.join(rig.dev, 'data', 'filler.bin')
    fillDisk(filler)
    const r = await cli(args(rig, v2.dir))
    expect(r.code, r.out + r.err).toBe(1)
    expect(r.out).toContain(`takes it: 0 of ${t.files.reduce((m, f) => m + f.chunks, 0)} chunks`)
    expect(lastLine(r.err)).toMatch(/^outpost: STORE_FULL: the device's disk is full: bundle [0-9a-f]{24} could not be installed; nothing was switched: the device keeps running slot a; the bundle received is kept: free room on the device and flash again$/)
    const s = await unchanged(rig, true)
    expect(s.transfer).toMatchObject({ bundleId: v2.bundleId, missing: 0 })
    // No half-made slot and no temporary file left behind.
    expect(listing(path.join(rig.dev, 'slots'))).not.toContain('.incoming')
    expect(listing(path.join(rig.dev, 'ota')).filter((f) => f.endsWith('.tmp'))).toEqual([])
    expect(listing(rig.dev).filter((f) => f.endsWith('.tmp'))).toEqual([])
    expect(existsSync(path.join(rig.dev, 'ota', 'committed.json'))).toBe(false)
    rmSync(filler)
    await unchanged(rig)
    const again = await cli(args(rig, v2.dir))
    expect(again.err, again.out).toBe('')
    expect(again.code).toBe(0)
    expect(again.out).toContain('0 chunks sent')
    expect((await rig.status()).running).toMatchObject({ slot: 'b', version: '0.2.0' })
  }, 90_000)

  it('the disk turns read-only in the middle of a transfer, and at commit: STORE_READ_ONLY at the CLI, the device process lives on; read-write again, the transfer resumes and commits', async () => {
    // The device's databases elsewhere: Linux does not remount a disk read-only while a file on it is
    // open for writing (SQLite's always is); a disk that fails in the field is turned read-only regardless.
    const rig = await diskRig('8m', { dataDir: temp() })
    const run = await flashUntilAThird(rig)
    remount(rig.dev, 'ro')
    const r = await run.done
    expect(r.code, r.out + r.err).toBe(1)
    expect(lastLine(r.err)).toMatch(/^outpost: STORE_READ_ONLY: the device's disk is read-only: chunk \d+ of \S+ could not be written; nothing was switched: the device keeps running slot a; the chunks received are kept: make the disk writable and flash again to resume$/)
    await new Promise((res) => setTimeout(res, 500))
    let s = await unchanged(rig)
    const present = s.transfer!.files.reduce((m, f) => m + f.present.length, 0)
    expect(present).toBeGreaterThan(0)
    expect(s.transfer!.missing).toBeGreaterThan(0)

    // Writable again: the rest arrives; read-only again before the commit.
    remount(rig.dev, 'rw')
    const t = await begin(rig, 16 * 1024)
    expect(t.missing).toBe(s.transfer!.missing)
    for (const f of t.files) for (let i = 0; i < f.chunks; i++) if (!f.present.includes(i)) await sendChunk(rig, f.name, i, 16 * 1024)
    remount(rig.dev, 'ro')
    const c = await cli(args(rig, v2.dir))
    expect(c.code, c.out + c.err).toBe(1)
    expect(lastLine(c.err)).toMatch(/^outpost: STORE_READ_ONLY: the device's disk is read-only: bundle [0-9a-f]{24} could not be installed; nothing was switched: the device keeps running slot a; the bundle received is kept: make the disk writable and flash again$/)
    s = await unchanged(rig)
    expect(s.transfer).toMatchObject({ bundleId: v2.bundleId, missing: 0 })

    remount(rig.dev, 'rw')
    const again = await cli(args(rig, v2.dir))
    expect(again.err, again.out).toBe('')
    expect(again.code).toBe(0)
    expect(again.out).toContain('0 chunks sent')
    expect((await rig.status()).running).toMatchObject({ slot: 'b', version: '0.2.0' })
  }, 90_000)

  it('a chunk flood cannot fill the disk: chunks past a file\'s end, of the wrong size, or sent again with other bytes are refused, and nothing grows; transfers begun and abandoned over and over leave one transfer\'s worth', async () => {
    const rig = await diskRig('8m')
    const ota = path.join(rig.dev, 'ota')
    const t = await begin(rig)
    const mjs = t.files.find((f) => f.name === 'thermo.code.cjs')!
    await sendChunk(rig, 'thermo.code.cjs', 0)
    const logSize = (): number => statSync(path.join(ota, 'chunks.log')).size
    const logBefore = logSize()
    // What the staging area takes on the disk (the device's database grows by every command meanwhile: not counted).
    const taken = (): number => listing(ota).reduce((n, f) => n + statSync(path.join(ota, f)).blocks * 512, 0)
    const takenBefore = taken()
    const junk = Buffer.alloc(64 * 1024, 1)
    // Past the end of the file, past the file list, one byte too many.
    expect((await caught(rig.call('chunk', { bundleId: v2.bundleId, file: 'thermo.code.cjs', index: mjs.chunks, data: junk.toString('base64'), sha256: sha256(junk) }))).code).toBe('BAD_ARGUMENT')
    expect((await caught(rig.call('chunk', { bundleId: v2.bundleId, file: 'other.bin', index: 0, data: junk.toString('base64'), sha256: sha256(junk) }))).code).toBe('BAD_ARGUMENT')
    const big = Buffer.alloc(64 * 1024 + 1, 1)
    expect((await caught(rig.call('chunk', { bundleId: v2.bundleId, file: 'thermo.code.cjs', index: 1, data: big.toString('base64'), sha256: sha256(big) }))).code).toBe('HASH_MISMATCH')
    // The same chunk again and again, each time other bytes of the right size with their own sha256.
    for (let i = 0; i < 50; i++) {
      const other = Buffer.alloc(64 * 1024, i + 1)
      const err = await caught(rig.call('chunk', { bundleId: v2.bundleId, file: 'thermo.code.cjs', index: 0, data: other.toString('base64'), sha256: sha256(other) }))
      expect(err.code).toBe('HASH_MISMATCH')
      expect(err.message).toMatch(/^chunk 0 of thermo\.code\.cjs was received already, with other bytes; nothing was written/)
    }
    expect(logSize()).toBe(logBefore)
    expect(readFileSync(path.join(ota, 'bundle', 'thermo.code.cjs')).subarray(0, 64 * 1024).equals(v2.files.find((f) => f.name === 'thermo.code.cjs')!.bytes.subarray(0, 64 * 1024))).toBe(true)
    expect(taken()).toBe(takenBefore)

    // Begun and abandoned twenty times, each time in another chunk size, a few chunks each.
    for (let k = 0; k < 20; k++) {
      const bytes = (k + 2) * 1024
      await begin(rig, bytes)
      for (let i = 0; i < 3; i++) await sendChunk(rig, 'better_sqlite3.node', i, bytes)
    }
    expect(readdirSync(ota).sort()).toEqual(['bundle', 'chunks.log', 'transfer.json'])
    expect(readFileSync(path.join(ota, 'chunks.log'), 'utf8').trim().split('\n')).toHaveLength(3)
    const s = await unchanged(rig)
    expect(s.transfer).toMatchObject({ chunkBytes: 21 * 1024 })
    expect(s.transfer!.files.find((f) => f.name === 'better_sqlite3.node')!.present).toEqual([0, 1, 2])
  }, 60_000)
})
