// The bundle a device of this project runs: `outpost device <name>` and the demo run the bundle
// in dist/bundles/<name>/ when it is current (bundle-stamp.ts) and build it first when it is not,
// so that what the demo runs is what a device runs. Several processes may ask at once (two
// terminals, tests side by side): one builds, under a lock file, and the others take its result.
import type { KeyObject } from 'node:crypto'
import { closeSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { stop as stopEsbuild } from 'esbuild'
import { ErrorCode, OutpostError } from '../runtime/errors.js'
import { running } from '../runtime/launcher/launcher.js'
import { buildDevice, defaultOutDir } from './build-device.js'
import { currentBundle } from './bundle-stamp.js'
import { PROJECT_ROOT } from './project-root.js'
import { budgetFor, kb } from './sizes.js'

/** How to find or make the bundle to run. */
export interface RunBundleOptions {
  root?: string
  /** Default `<root>/dist/bundles`. */
  outDir?: string
  /** Signs a bundle built here; without one it is built unsigned (fine to run, refused by flashing). */
  signingKey?: KeyObject
  /** Told what happens, one line each: building, built (size), over the size budget. */
  onNote?: (line: string) => void
  /** Longest wait for another process's build, ms (default 120 s). */
  lockWaitMs?: number
}

/** The bundle to run. */
export interface RunnableBundle {
  /** The file to run (`node <entry>` or import it). */
  entry: string
  /** True when it was built just now. */
  built: boolean
}

/** A build's lock older than this is taken as left over by a build that died, ms. */
const STALE_LOCK_MS = 5 * 60_000

/**
 * Takes `file` as a lock: created exclusively with this process's pid in it. A lock whose process
 * has gone (kill -9 during a build) or that is very old is removed and taken.
 * @returns a function that releases it
 * @throws TIMEOUT when another live process holds it longer than `waitMs`
 */
async function takeLock(file: string, waitMs: number): Promise<() => void> {
  const until = Date.now() + waitMs
  for (;;) {
    try {
      const fd = openSync(file, 'wx')
      writeSync(fd, String(process.pid))
      closeSync(fd)
      return () => rmSync(file, { force: true })
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    }
    let holder = NaN
    let age = 0
    try {
      holder = Number(readFileSync(file, 'utf8'))
      age = Date.now() - statSync(file).mtimeMs
    } catch {
      continue // released between the two calls: try again at once
    }
    // A lock file still empty was created a moment ago; its pid follows.
    if ((!Number.isNaN(holder) && holder !== 0 && !running(holder)) || age > STALE_LOCK_MS) {
      rmSync(file, { force: true })
      continue
    }
    if (Date.now() > until) throw new OutpostError(ErrorCode.TIMEOUT, `another process (pid ${holder}) is building into ${path.dirname(file)} and has not finished in ${Math.round(waitMs / 1000)} s; remove ${file} if it is gone`)
    await sleep(100)
  }
}

/**
 * The bundle of device `name` to run: the current one, else one built now (unsigned unless a
 * key is given). A build here is not held to the size budget (it warns instead): a demo must
 * run even when its bundle has outgrown what `outpost build` allows.
 * @throws BUILD_FAILED, NOT_FOUND and the other errors of buildDevice; TIMEOUT (see takeLock)
 */
export async function ensureRunnableBundle(name: string, opts: RunBundleOptions = {}): Promise<RunnableBundle> {
  const root = opts.root ?? PROJECT_ROOT
  const outDir = path.resolve(opts.outDir ?? defaultOutDir(root))
  const ready = currentBundle(outDir, name, root)
  if (ready !== undefined) return { entry: ready, built: false }
  await mkdir(outDir, { recursive: true })
  const release = await takeLock(path.join(outDir, `.${name}.lock`), opts.lockWaitMs ?? 120_000)
  try {
    // Another process may have built it while this one waited.
    const now = currentBundle(outDir, name, root)
    if (now !== undefined) return { entry: now, built: false }
    opts.onNote?.(`building the ${name} bundle (its sources changed, or it was never built)`)
    const unbounded = { minifiedKb: Number.MAX_SAFE_INTEGER, gzipKb: Number.MAX_SAFE_INTEGER }
    const r = await buildDevice(name, { root, outDir, signingKey: opts.signingKey, unsigned: opts.signingKey === undefined, budget: unbounded })
    const budget = budgetFor(name, root)
    const signed = opts.signingKey === undefined ? 'unsigned' : 'signed'
    opts.onNote?.(`built ${path.relative(root, r.entry)}: ${kb(r.bytes)}, ${kb(r.gzipBytes)} gzip, ${signed}`)
    if (r.bytes > budget.minifiedKb * 1024 || r.gzipBytes > budget.gzipKb * 1024) {
      opts.onNote?.(`the ${name} bundle is over its size budget (${budget.minifiedKb} KB, ${budget.gzipKb} KB gzip): outpost build ${name} would refuse it`)
    }
    return { entry: r.entry, built: true }
  } finally {
    release()
  }
}

/**
 * Ends esbuild's service process, which a build starts and which would otherwise live on beside
 * the devices a CLI runs. Call it once no build of this process is under way.
 */
export async function stopBundler(): Promise<void> {
  await stopEsbuild()
}
