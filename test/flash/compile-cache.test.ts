// Node's compile cache for the bundle a launcher starts: the device gets NODE_COMPILE_CACHE, a
// folder of its own per slot and bundle outside the slot folders (which hold only what their
// manifest lists), and the folder of a bundle that left its slot is removed. Node 20 ignores the
// variable; Node 22.1 and later keep the bundle's compiled code there.
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { generateSigningKeys } from '../../build/index.js'
import { flashBundle } from '../../build/flash.js'
import { MANIFEST_FILE } from '../../build/manifest.js'
import type { TestProcess } from '../helpers/device-process.js'
import { tempDirs } from '../build/build-helpers.js'
import { mountSmallDisk, type SmallDisk } from '../helpers/small-disk.js'
import { fakeBundle, startLauncher } from './flash-helpers.js'

const temp = tempDirs('flash-compile-cache')

/** A device that says where its compile cache is, then reports ready and idles. */
const saysItsCache = (mark: string): string =>
  `console.log(JSON.stringify({ level: 30, msg: 'cache', mark: ${JSON.stringify(mark)}, at: process.env.NODE_COMPILE_CACHE ?? null }))\nconsole.log('{"level":30,"msg":"ready"}')\nsetInterval(() => {}, 1000)\n`

describe('the launcher gives the device a compile cache of its slot and bundle', () => {
  const keys = generateSigningKeys()
  const launchers: TestProcess[] = []
  const disks: SmallDisk[] = []
  afterAll(async () => {
    for (const l of launchers) await l.kill()
    for (const d of disks) d.dispose()
  })

  /** Starts the launcher of `dev` until its device said where its cache is; that place. */
  const cacheSaid = async (dev: string, env: Record<string, string> = {}): Promise<string | null> => {
    const l = startLauncher(dev, { OUTPOST_DEVICE_ID: 'cache-1', ...env })
    launchers.push(l)
    const line = await l.waitFor('"msg":"cache"')
    l.child.kill('SIGTERM')
    expect((await l.exited).code).toBe(0)
    return (JSON.parse(line.slice(line.indexOf('{'))) as { at: string | null }).at
  }
  const entrySha = (bundle: string): string =>
    (JSON.parse(readFileSync(path.join(bundle, MANIFEST_FILE), 'utf8')) as { files: { path: string; sha256: string }[] }).files.find((f) => f.path === 'device.mjs')!.sha256

  it('one folder per slot and bundle; the folder of the bundle a slot held before is removed', async () => {
    const dev = temp()
    const first = await fakeBundle(path.join(temp(), 'first'), saysItsCache('first'), keys.privatePem, 'cache-dev')
    expect((await flashBundle(first, { to: dev, key: keys.publicPem })).slot).toBe('a')
    const inA = path.join(dev, 'compile-cache', `a-${entrySha(first).slice(0, 16)}`)
    expect(await cacheSaid(dev)).toBe(inA)
    // What Node 22 would have written there (Node 20 writes nothing).
    mkdirSync(inA, { recursive: true })

    const second = await fakeBundle(path.join(temp(), 'second'), saysItsCache('second'), keys.privatePem, 'cache-dev')
    expect((await flashBundle(second, { to: dev })).slot).toBe('b')
    const inB = path.join(dev, 'compile-cache', `b-${entrySha(second).slice(0, 16)}`)
    expect(await cacheSaid(dev)).toBe(inB)
    mkdirSync(inB, { recursive: true })
    // Slot a's bundle may come back (a rollback): its cache stays.
    expect(existsSync(inA)).toBe(true)

    // A third bundle replaces the first in slot a: the first one's cache goes.
    const third = await fakeBundle(path.join(temp(), 'third'), saysItsCache('third'), keys.privatePem, 'cache-dev')
    expect((await flashBundle(third, { to: dev })).slot).toBe('a')
    const inA3 = path.join(dev, 'compile-cache', `a-${entrySha(third).slice(0, 16)}`)
    expect(await cacheSaid(dev)).toBe(inA3)
    expect(readdirSync(path.join(dev, 'compile-cache')).sort()).toEqual([path.basename(inB)])
  }, 60_000)

  it("a NODE_COMPILE_CACHE the device's environment sets is passed on as it is", async () => {
    const dev = temp()
    const bundle = await fakeBundle(path.join(temp(), 'own'), saysItsCache('own'), keys.privatePem, 'cache-dev')
    await flashBundle(bundle, { to: dev, key: keys.publicPem })
    const own = path.join(temp(), 'elsewhere')
    expect(await cacheSaid(dev, { NODE_COMPILE_CACHE: own })).toBe(own)
    expect(existsSync(path.join(dev, 'compile-cache'))).toBe(false)
  }, 30_000)

  it('none on a disk with less than 16 MB free, and the caches there removed: the room left is the data\'s', async () => {
    const disk = mountSmallDisk(path.join(temp(), 'sd'), '8m')
    // About a small disk, for real: it needs root to mount one.
    if (disk === undefined) throw new Error('cannot mount a tmpfs here (the disk tests run as root)')
    disks.push(disk)
    const bundle = await fakeBundle(path.join(temp(), 'small'), saysItsCache('small'), keys.privatePem, 'cache-dev')
    await flashBundle(bundle, { to: disk.dir, key: keys.publicPem })
    // A cache kept while the disk had room (as Node 22 writes one) goes back to the data.
    mkdirSync(path.join(disk.dir, 'compile-cache', 'b-0123456789abcdef', 'v22'), { recursive: true })
    writeFileSync(path.join(disk.dir, 'compile-cache', 'b-0123456789abcdef', 'v22', 'entry'), Buffer.alloc(90_000))
    expect(await cacheSaid(disk.dir)).toBeNull()
    expect(existsSync(path.join(disk.dir, 'compile-cache'))).toBe(false)
  }, 30_000)
})
