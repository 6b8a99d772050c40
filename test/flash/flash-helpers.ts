// Shared by the flash tests: bundles made from a built one (a changed manifest, re-signed) or from
// scratch (a device that fails on purpose), the device's launcher as a process of its own, and
// its --check answer.
import { execFile } from 'node:child_process'
import { createPrivateKey } from 'node:crypto'
import { cpSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import { describeFiles, makeManifest, MANIFEST_FILE, manifestBytes, SIGNATURE_FILE, type Manifest } from '../../build/manifest.js'
import { signManifest } from '../../build/signing.js'
import { startProcess, type TestProcess } from '../helpers/device-process.js'
import { bareEnv } from '../build/build-helpers.js'

const run = promisify(execFile)

/** A copy of bundle `from` in `to` with its manifest changed by `change` (and any files added), signed with `privatePem`. */
export function variant(from: string, to: string, privatePem: string, change: Partial<Manifest>, files: Record<string, string> = {}): string {
  cpSync(from, to, { recursive: true })
  const manifest = JSON.parse(readFileSync(path.join(to, MANIFEST_FILE), 'utf8')) as Manifest
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(to, name), text)
  return sign(to, { ...manifest, ...change }, privatePem)
}

/** Writes `manifest` (its files described anew) and its signature into `dir`. */
async function signDir(dir: string, head: Omit<Manifest, 'format' | 'files' | 'node'>, privatePem: string): Promise<string> {
  const manifest = makeManifest(head, await describeFiles(dir))
  return sign(dir, manifest, privatePem)
}

function sign(dir: string, manifest: Manifest, privatePem: string): string {
  const bytes = manifestBytes(manifest)
  writeFileSync(path.join(dir, MANIFEST_FILE), bytes)
  writeFileSync(path.join(dir, SIGNATURE_FILE), signManifest(bytes, createPrivateKey(privatePem)))
  return dir
}

/** A correctly signed bundle in `dir` whose whole device is `js` (entry `device.mjs`, no addon). */
export async function fakeBundle(dir: string, js: string, privatePem: string, device = 'broken'): Promise<string> {
  mkdirSync(dir, { recursive: true })
  writeFileSync(path.join(dir, 'device.mjs'), js)
  return signDir(dir, { device, version: '0.0.1', buildTime: '2025-03-01T00:00:00.000Z', entry: 'device.mjs', addon: null }, privatePem)
}

/**
 * `node <dev>/launcher.mjs` with the device's variables, nothing of this project's environment;
 * a new slot is kept 1 s after it reports ready (not 10: tests wait for it) unless `env` says otherwise.
 */
export function startLauncher(dev: string, env: Record<string, string>): TestProcess {
  return startProcess(path.join(dev, 'launcher.mjs'), [], bareEnv({ OUTPOST_LAUNCHER_PROBATION_MS: '1000', ...env }))
}

/** What `node <dev>/launcher.mjs --check` says it would start, or its refusal. */
export async function launcherCheck(dev: string, env: Record<string, string> = {}): Promise<{ code: number; slot?: { slot: string; buildTime: string; version: string; trial: boolean; rollback?: { from: string; reason: string } }; err: string }> {
  try {
    const r = await run(process.execPath, [path.join(dev, 'launcher.mjs'), '--check'], { env: bareEnv(env) })
    return { code: 0, slot: JSON.parse(r.stdout) as never, err: r.stderr }
  } catch (e) {
    const x = e as { code: number; stderr: string }
    return { code: x.code, err: x.stderr }
  }
}

/** The JSON of a device file (active.json, state.json). */
export const readJson = <T>(file: string): T => JSON.parse(readFileSync(file, 'utf8')) as T

/** The pid in the launcher's line saying it started a slot, the `n`th such line. */
export function startedPid(lines: readonly string[], n = 1): number | undefined {
  const started = lines.filter((l) => l.includes('"device":"launcher"') && l.includes('started slot'))
  const line = started[n - 1]
  return line === undefined ? undefined : (JSON.parse(line) as { pid: number }).pid
}

/** Every file under the device folder with its size and modification time: what "unchanged" means. */
export function snapshot(dir: string): string[] {
  const out: string[] = []
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name)
      if (e.isDirectory()) walk(p)
      else out.push(`${path.relative(dir, p)} ${statSync(p).size} ${statSync(p).mtimeMs}`)
    }
  }
  walk(dir)
  return out.sort()
}
