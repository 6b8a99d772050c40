// The V8 code cache of a device bundle (runtime/launcher/bundle-runner.ts), from outside: real
// bundle processes, given a cache folder in NODE_COMPILE_CACHE as the launcher gives one. The
// cache is made once the device reported ready and used by the next start; one that is damaged,
// cut short or made under other V8 flags is not used (a damaged one given to V8 crashed Node), the
// device starts as without one, and the cache is made again; no folder to write it in costs
// nothing but the cache.
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statfsSync, statSync, writeFileSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import path from 'node:path'
import { crc32 } from 'node:zlib'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildDevice, type BuiltDevice } from '../../build/index.js'
import { startProcess, type TestProcess } from '../helpers/device-process.js'
import { mountSmallDisk, type SmallDisk } from '../helpers/small-disk.js'
import { until } from '../helpers/wait.js'
import { bareEnv, tempDirs } from './build-helpers.js'

const temp = tempDirs('code-cache')

describe('a device bundle keeps a V8 code cache in the folder NODE_COMPILE_CACHE names', () => {
  let built: BuiltDevice
  let home: string
  const running: TestProcess[] = []
  const disks: SmallDisk[] = []
  beforeAll(async () => {
    built = await buildDevice('display', { outDir: temp(), unsigned: true })
    home = temp()
    cpSync(built.dir, path.join(home, 'display'), { recursive: true })
  }, 60_000)
  afterAll(async () => {
    for (const p of running) await p.kill()
    for (const d of disks) d.dispose()
  })

  const cacheName = (): string => `outpost-display-${built.sha256.slice(0, 16)}-${process.version}-${process.platform}-${process.arch}.v8`
  /** Starts the display (no broker: it runs offline) until ready, then stops it with SIGTERM; its exit code. */
  const startUntilReady = async (env: Record<string, string>): Promise<number | null> => {
    const p = startProcess(path.join(home, 'display', 'display.cjs'), [], bareEnv({ OUTPOST_MQTT_URL: 'mqtt://127.0.0.1:1', OUTPOST_DEVICE_ID: 'cache-1', OUTPOST_LOG_FORMAT: 'json', ...env }))
    running.push(p)
    await p.waitFor('"msg":"ready"', 20_000)
    // The cache is written after ready, in the next turn of the event loop: give it the time to.
    await new Promise((r) => setTimeout(r, 300))
    p.child.kill('SIGTERM')
    return (await p.exited).code
  }
  /** The cache file's checksum holds, and it names the code it was made from (the display's in `bundle`). */
  const sound = (file: string, bundle = path.join(home, 'display')): boolean => {
    const b = readFileSync(file)
    const code = path.join(bundle, 'display.code.cjs')
    return b.length > 16 && b.toString('latin1', 0, 4) === 'Opv9' && b.readUInt32LE(4) === crc32(b.subarray(8)) && b.readUInt32LE(8) === crc32(readFileSync(code)) && b.readUInt32LE(12) === crc32(Buffer.from(code))
  }
  const identity = (file: string): string => {
    const s = statSync(file)
    return `${s.ino}:${s.mtimeMs}`
  }

  it('made after the first start (with a checksum), used by the next ones as it is', async () => {
    const dir = path.join(temp(), 'cache')
    expect(await startUntilReady({ NODE_COMPILE_CACHE: dir })).toBe(0)
    const file = path.join(dir, cacheName())
    await until(() => existsSync(file), 5_000)
    expect(sound(file)).toBe(true)
    expect(statSync(file).size).toBeGreaterThan(100_000)
    const first = identity(file)
    // Taken by V8 (a cache refused would be written again, by a rename: another inode).
    expect(await startUntilReady({ NODE_COMPILE_CACHE: dir })).toBe(0)
    expect(await startUntilReady({ NODE_COMPILE_CACHE: dir })).toBe(0)
    expect(identity(file)).toBe(first)
    expect(readdirSync(dir)).toEqual([cacheName()])
  }, 60_000)

  it('with pending deprecations on, in any spelling, under --throw-deprecation: the same cache, made and used, and no deprecation warning', async () => {
    // The runner takes zlib's CRC-32 from Node's binding (process.binding, DEP0111), not from
    // node:zlib, which loads node:stream at start; with pending deprecations on, that would warn
    // at every start, and under --throw-deprecation end it.
    const ways: Record<string, string>[] = [
      { NODE_OPTIONS: '--pending-deprecation --throw-deprecation' },
      { NODE_OPTIONS: '--pending_deprecation --throw-deprecation' },
      { NODE_OPTIONS: '--throw-deprecation', NODE_PENDING_DEPRECATION: '1' },
    ]
    for (const way of ways) {
      const dir = path.join(temp(), 'cache')
      const lines: string[] = []
      for (let i = 0; i < 2; i++) {
        const p = startProcess(path.join(home, 'display', 'display.cjs'), [], bareEnv({ OUTPOST_MQTT_URL: 'mqtt://127.0.0.1:1', OUTPOST_DEVICE_ID: 'cache-4', OUTPOST_LOG_FORMAT: 'json', NODE_COMPILE_CACHE: dir, ...way }))
        running.push(p)
        await p.waitFor('"msg":"ready"', 20_000)
        await new Promise((r) => setTimeout(r, 300))
        p.child.kill('SIGTERM')
        expect((await p.exited).code, `${JSON.stringify(way)}\n${p.lines.join('\n')}`).toBe(0)
        lines.push(...p.lines)
        if (i === 0) await until(() => existsSync(path.join(dir, cacheName())), 5_000)
      }
      expect(sound(path.join(dir, cacheName())), JSON.stringify(way)).toBe(true)
      expect(lines.filter((l) => /Deprecation|DEP0/.test(l)), JSON.stringify(way)).toEqual([])
    }
  }, 90_000)

  it('made also by a device stopped (SIGTERM) the moment it said ready, before the turn that writes it came', async () => {
    // Seen with the CommonJS entry: the stop ran its course within the same turn, and the process
    // ended without writing the cache; the next start compiled everything again, and so every start.
    for (let i = 0; i < 5; i++) {
      const dir = path.join(temp(), 'cache')
      const p = startProcess(path.join(home, 'display', 'display.cjs'), [], bareEnv({ OUTPOST_MQTT_URL: 'mqtt://127.0.0.1:1', OUTPOST_DEVICE_ID: 'cache-3', OUTPOST_LOG_FORMAT: 'json', NODE_COMPILE_CACHE: dir }))
      running.push(p)
      // The signal goes as the line arrives (waitFor looks every 10 ms: often too late for this).
      let sent = false
      p.child.stdout!.on('data', (chunk: string) => {
        if (sent || !chunk.includes('"msg":"ready"')) return
        sent = true
        p.child.kill('SIGTERM')
      })
      expect((await p.exited).code, p.lines.join('\n')).toBe(0)
      expect(sent).toBe(true)
      const file = path.join(dir, cacheName())
      expect(existsSync(file), `start ${i}`).toBe(true)
      expect(sound(file)).toBe(true)
    }
  }, 60_000)

  it('damaged, cut short, or made under other V8 flags: the device starts all the same, and the cache is made again', async () => {
    const dir = path.join(temp(), 'cache')
    const file = path.join(dir, cacheName())
    expect(await startUntilReady({ NODE_COMPILE_CACHE: dir })).toBe(0)
    await until(() => existsSync(file), 5_000)
    // Bytes flipped all through V8's data (the header left alone): given to V8, this crashed Node 20.
    const flipped = readFileSync(file)
    for (let i = 2_000; i < flipped.length; i += 997) flipped[i] = flipped[i]! ^ 0x5a
    writeFileSync(file, flipped)
    const before = identity(file)
    expect(await startUntilReady({ NODE_COMPILE_CACHE: dir })).toBe(0)
    await until(() => identity(file) !== before, 5_000)
    expect(sound(file)).toBe(true)
    // Cut short, as a disk that filled might leave it.
    writeFileSync(file, readFileSync(file).subarray(0, 1_000))
    expect(await startUntilReady({ NODE_COMPILE_CACHE: dir })).toBe(0)
    await until(() => statSync(file).size > 1_000, 5_000)
    expect(sound(file)).toBe(true)
    // Sound, but made by a V8 with other flags: V8 refuses it, and it is made under these flags.
    const sound1 = identity(file)
    expect(await startUntilReady({ NODE_COMPILE_CACHE: dir, NODE_OPTIONS: '--max-old-space-size=96' })).toBe(0)
    await until(() => identity(file) !== sound1, 5_000)
    expect(sound(file)).toBe(true)
    // Garbage from the first byte.
    writeFileSync(file, Buffer.alloc(4_096, 0x41))
    expect(await startUntilReady({ NODE_COMPILE_CACHE: dir })).toBe(0)
    await until(() => sound(file), 5_000)
  }, 90_000)

  it("older caches of the device in its folder are removed once this one is written, another device's are kept; none without NODE_COMPILE_CACHE, or with NODE_DISABLE_COMPILE_CACHE=1", async () => {
    const dir = path.join(temp(), 'cache')
    const machine = `${process.version}-${process.platform}-${process.arch}.v8`
    // An older build of this device, and one from a runner before caches were named after their device.
    const older = [`outpost-display-0123456789abcdef-${machine}`, `outpost-0123456789abcdef-${machine}`]
    // Another device's, in a folder that devices share (one NODE_COMPILE_CACHE for all): two devices took turns deleting each other's.
    const others = [`outpost-thermo-0123456789abcdef-${machine}`, `outpost-display2-0123456789abcdef-${machine}`]
    mkdirSync(dir)
    for (const f of [...older, ...others]) cpSync(path.join(home, 'display', 'display.code.cjs'), path.join(dir, f)) // any bytes: it is not read
    writeFileSync(path.join(dir, 'notes.txt'), 'not ours\n')
    // What a process killed while it wrote its cache left.
    const cut = `${cacheName()}.999999.tmp`
    writeFileSync(path.join(dir, cut), Buffer.alloc(50_000))
    expect(await startUntilReady({ NODE_COMPILE_CACHE: dir })).toBe(0)
    await until(() => [...older, cut].every((f) => !existsSync(path.join(dir, f))), 5_000)
    expect(readdirSync(dir).sort()).toEqual(['notes.txt', cacheName(), ...others].sort())

    const off = path.join(temp(), 'cache')
    expect(await startUntilReady({ NODE_COMPILE_CACHE: off, NODE_DISABLE_COMPILE_CACHE: '1' })).toBe(0)
    expect(existsSync(off)).toBe(false)
    // None given: nothing written beside the bundle either.
    const files = readdirSync(path.join(home, 'display')).sort()
    expect(await startUntilReady({})).toBe(0)
    expect(readdirSync(path.join(home, 'display')).sort()).toEqual(files)
  }, 60_000)

  it('made from other code of the same length (changed in place) or at another path (a copy): not used, made again; the new code runs', async () => {
    const bundle = path.join(temp(), 'display')
    cpSync(path.join(home, 'display'), bundle, { recursive: true })
    const dir = path.join(temp(), 'cache')
    const file = path.join(dir, cacheName())
    const run = async (at: string): Promise<string[]> => {
      const p = startProcess(path.join(at, 'display.cjs'), [], bareEnv({ OUTPOST_MQTT_URL: 'mqtt://127.0.0.1:1', OUTPOST_DEVICE_ID: 'cache-4', OUTPOST_LOG_FORMAT: 'json', NODE_COMPILE_CACHE: dir }))
      running.push(p)
      await p.waitFor('"msg":"ready"', 20_000)
      await new Promise((r) => setTimeout(r, 300))
      p.child.kill('SIGTERM')
      expect((await p.exited).code, p.lines.join('\n')).toBe(0)
      return p.lines
    }
    await run(bundle)
    expect(sound(file, bundle)).toBe(true)
    // One log message changed, the length kept: V8 checks only the length, and took the old cache.
    const code = path.join(bundle, 'display.code.cjs')
    const text = readFileSync(code, 'utf8')
    expect(text).toContain('"runtime started"')
    writeFileSync(code, text.replace('"runtime started"', '"RUNTIME STARTED"'))
    const first = identity(file)
    const lines = await run(bundle)
    expect(lines.some((l) => l.includes('"msg":"RUNTIME STARTED"'))).toBe(true)
    await until(() => identity(file) !== first, 5_000)
    expect(sound(file, bundle)).toBe(true)
    // The same bundle copied elsewhere, beside the same cache: made again for the copy's path.
    const copy = path.join(temp(), 'display')
    cpSync(bundle, copy, { recursive: true })
    const second = identity(file)
    await run(copy)
    await until(() => identity(file) !== second, 5_000)
    expect(sound(file, copy)).toBe(true)
  }, 60_000)

  it('a code file that is gone, empty or not a file (a FIFO waited for a writer forever): one line that says so, exit code 1', async () => {
    for (const damage of ['gone', 'empty', 'fifo', 'fifo, source maps'] as const) {
      const bundle = path.join(temp(), 'display')
      cpSync(path.join(home, 'display'), bundle, { recursive: true })
      const code = path.join(bundle, 'display.code.cjs')
      if (damage === 'gone') rmSync(code)
      else if (damage === 'empty') writeFileSync(code, '')
      else {
        rmSync(code)
        execFileSync('mkfifo', [code])
      }
      const maps: Record<string, string> = damage === 'fifo, source maps' ? { NODE_OPTIONS: '--enable-source-maps' } : {}
      const p = startProcess(path.join(bundle, 'display.cjs'), [], bareEnv({ OUTPOST_MQTT_URL: 'mqtt://127.0.0.1:1', OUTPOST_DEVICE_ID: 'cache-5', NODE_COMPILE_CACHE: path.join(temp(), 'cache'), ...maps }))
      running.push(p)
      expect((await p.exited).code, damage).toBe(1)
      const said = damage === 'gone' ? `its code ${code} cannot be read (ENOENT` : damage === 'empty' ? `its code ${code} is empty` : `its code ${code} is not a file`
      expect(p.lines, damage).toEqual([expect.stringMatching(new RegExp(`^outpost: HASH_MISMATCH: this device bundle cannot start: ${said.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}.*; build or flash the bundle again$`))])
    }
  }, 30_000)

  it('with --enable-source-maps, a code file emptied between its check and its loading: one line that says so, exit code 1 (it exited 0, silently)', async () => {
    const bundle = path.join(temp(), 'display')
    cpSync(path.join(home, 'display'), bundle, { recursive: true })
    const code = path.join(bundle, 'display.code.cjs')
    // A preload that empties the code file as the runner closes it after its check, before
    // Node's loader reads it: the rewrite of a file racing a start, made certain.
    const empties = path.join(temp(), 'empties.cjs')
    writeFileSync(empties, [
      "const fs = require('node:fs'); const close = fs.closeSync; let done = false",
      'fs.closeSync = function (fd) {',
      "  const which = done ? '' : fs.readlinkSync('/proc/self/fd/' + fd)",
      '  const r = close.apply(this, arguments)',
      '  if (which === process.env.VICTIM) { done = true; fs.truncateSync(which, 0) }',
      '  return r',
      '}',
    ].join('\n'))
    const p = startProcess(path.join(bundle, 'display.cjs'), [], bareEnv({ OUTPOST_MQTT_URL: 'mqtt://127.0.0.1:1', OUTPOST_DEVICE_ID: 'cache-6', VICTIM: code, NODE_OPTIONS: `--enable-source-maps --require ${empties}` }))
    running.push(p)
    expect((await p.exited).code).toBe(1)
    expect(statSync(code).size).toBe(0)
    expect(p.lines).toEqual([`outpost: HASH_MISMATCH: this device bundle cannot start: its code ${code} changed while it started (nothing of it ran); build or flash the bundle again`])
  }, 30_000)

  it('with --enable-source-maps: the code is loaded by require(), without a cache, and a stack names the sources', async () => {
    const dir = path.join(temp(), 'cache')
    // A preload that makes the device's first reading of the monotonic clock throw, so that a stack is printed.
    const trap = path.join(temp(), 'trap.cjs')
    writeFileSync(trap, "process.hrtime = Object.assign(() => { throw new Error('trap') }, { bigint: process.hrtime.bigint })\n")
    const p = startProcess(path.join(home, 'display', 'display.cjs'), [], bareEnv({ OUTPOST_MQTT_URL: 'mqtt://127.0.0.1:1', OUTPOST_DEVICE_ID: 'cache-2', NODE_COMPILE_CACHE: dir, NODE_OPTIONS: `--enable-source-maps --require ${trap}` }))
    running.push(p)
    expect((await p.exited).code).not.toBe(0)
    const stack = p.lines.join('\n')
    expect(stack).toContain('Error: trap')
    expect(stack).toMatch(/\((?:[^()]*\/)?(?:node_modules|runtime|devices)\/[^()]*\.(?:js|ts):\d+:\d+\)/)
    expect(existsSync(dir)).toBe(false)
  }, 30_000)

  it('a disk too full for the cache: the device runs without one, and nothing of it is left to take the room', async () => {
    const disk = mountSmallDisk(path.join(temp(), 'sd'), '1m')
    if (disk === undefined) throw new Error('cannot mount a tmpfs here (the disk tests run as root)')
    disks.push(disk)
    // Room for a part of the cache only.
    writeFileSync(path.join(disk.dir, 'data'), Buffer.alloc(1024 * 1024 - 160 * 1024))
    const free = (): number => statfsSync(disk.dir).bfree
    const before = free()
    const dir = path.join(disk.dir, 'cache')
    expect(await startUntilReady({ NODE_COMPILE_CACHE: dir })).toBe(0)
    expect(await startUntilReady({ NODE_COMPILE_CACHE: dir })).toBe(0)
    expect(readdirSync(dir)).toEqual([])
    expect(free()).toBe(before)
  }, 30_000)

  it('a cache folder that cannot be made (under a file): the device starts and runs without a cache', async () => {
    const blocker = path.join(temp(), 'a-file')
    writeFileSync(blocker, 'x')
    expect(await startUntilReady({ NODE_COMPILE_CACHE: path.join(blocker, 'cache') })).toBe(0)
    expect(readFileSync(blocker, 'utf8')).toBe('x')
  }, 30_000)
})
