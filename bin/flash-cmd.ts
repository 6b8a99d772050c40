// `outpost flash <bundle-dir> --to <path>` and `outpost flash status --to <path>`: a built bundle
// onto a device's filesystem in A/B slots, and what the device has (build/flash.ts).
import { existsSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { ErrorCode, errorMessage, OutpostError } from '../runtime/errors.js'
import type { FlashArgs } from './cli-args.js'

export const FLASH_HELP = `outpost flash — install a device bundle onto a device's filesystem (A/B slots, rollback)

Usage:
  outpost flash <bundle-dir> --to <path> [--key <public.pem>]
  outpost flash status --to <path> [--json]

  <bundle-dir>       a bundle directory from outpost build (dist/bundles/<device>)
  --to PATH          the device's filesystem: an SD card mount or a rootfs folder (it must exist)
  --key FILE         a public key to trust (signing-key.pub.pem): the bundle may be signed by it, and
                     the device keeps it in <path>/keys/ once flashed. A device that trusts no key
                     refuses every bundle
  --json             for status: JSON output

The bundle is verified first (signature by a trusted key, every file's sha256, the device's Node
ABI, platform and architecture): refused, nothing on the device changes. Then it is copied into
the slot that is not active, flushed, verified again there, and <path>/active.json is switched to
it by one rename; the other slot is kept for rollback. Killed at any moment, the device starts the
old bundle or the new one. The device runs it with: node <path>/launcher.mjs (see docs/build.md).
`

type FlashModule = typeof import('../build/flash.js')

/** build/flash: compiled beside this file (dist/build/), else its TypeScript source through tsx (as outpost build loads build/). */
async function loadFlashModule(): Promise<FlashModule> {
  try {
    return await import('../build/flash.js')
  } catch (err) {
    if ((err as { code?: string }).code !== 'ERR_MODULE_NOT_FOUND' || !errorMessage(err).includes(`${path.sep}build${path.sep}flash.js`)) throw err
  }
  const above = fileURLToPath(new URL('..', import.meta.url))
  const root = existsSync(path.join(above, 'package.json')) ? above : path.dirname(path.resolve(above))
  const source = path.join(root, 'build', 'flash.ts')
  if (!existsSync(source)) throw new OutpostError(ErrorCode.BAD_ARGUMENT, 'this copy of outpost has no build/flash module')
  const { tsImport } = (await import('tsx/esm/api')) as { tsImport: (specifier: string, parent: string) => Promise<unknown> }
  return (await tsImport(pathToFileURL(source).href, import.meta.url)) as FlashModule
}

/** A slot in one line: `slot b: thermo 0.1.0, built …`. */
const slotLine = (s: { slot: string; device?: string; version?: string; buildTime?: string; problem?: string }): string =>
  `slot ${s.slot}: ${s.device ?? '?'} ${s.version ?? '?'}, built ${s.buildTime ?? '?'}${s.problem === undefined ? '' : ` — does not start: ${s.problem}`}`

/**
 * Flashes, or tells the device's status.
 * @returns what to print
 * @throws BAD_ARGUMENT (a wrong --key), UNKNOWN_KEY (the device trusts no key), and the refusals of verifyBundle
 */
export async function runFlashCommand(opts: FlashArgs, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const f = await loadFlashModule()
  if (opts.verb === 'status') {
    const s = await f.deviceStatus(opts.to)
    if (opts.json) return JSON.stringify(s, null, 2)
    const lines = [`device at ${s.root}`]
    if (s.pointer === undefined || s.active === undefined) lines.push('  nothing flashed yet (no active.json)')
    else {
      const p = s.pointer
      const trial = p.confirmed ? 'kept (it reported ready since the switch)' : `new: not ready yet, started ${p.starts} time${p.starts === 1 ? '' : 's'} since the switch at ${p.switchedAt}`
      lines.push(`  active:   ${slotLine(s.active)}; ${trial}`)
      lines.push(`  previous: ${s.previous === undefined ? 'none (nothing to roll back to)' : `${slotLine(s.previous)} (kept for rollback)`}`)
    }
    const l = s.last
    const last = l === undefined
      ? 'none (the launcher has not run since a flash)'
      : l.outcome === 'success'
        ? `success at ${l.at}: slot ${l.slot} (${l.device} ${l.version}, built ${l.buildTime}) reported ready`
        : l.outcome === 'rolled-back'
          ? `rolled back at ${l.at} from slot ${l.from?.slot} (built ${l.from?.buildTime ?? '?'}) to slot ${l.slot}: ${l.reason}`
          : `no bootable slot at ${l.at}: ${l.reason}`
    lines.push(`  last:     ${last}`)
    lines.push(`  keys:     ${s.keys.length === 0 ? 'none (every bundle is refused; flash with --key <public.pem>)' : s.keys.join(', ')}`)
    lines.push(`  node:     ${s.target.nodeVersion} (ABI ${s.target.nodeAbi}), ${s.target.platform}-${s.target.arch}${s.target.from === 'device.json' ? ', as the launcher last saw it' : ', this machine\'s (the launcher has not run there yet)'}`)
    return lines.join('\n')
  }
  const delay = env.OUTPOST_FLASH_STEP_DELAY_MS
  const stepDelayMs = delay === undefined || delay === '' ? undefined : Number(delay)
  if (stepDelayMs !== undefined && !(Number.isSafeInteger(stepDelayMs) && stepDelayMs >= 0)) throw new OutpostError(ErrorCode.BAD_ARGUMENT, `OUTPOST_FLASH_STEP_DELAY_MS "${delay}" is not accepted; expected a whole number of milliseconds`)
  const r = await f.flashBundle(opts.bundle!, {
    to: opts.to,
    key: opts.key,
    stepDelayMs,
    // Only when slowed down (testing interrupted flashing): each step, as it starts.
    onStep: stepDelayMs === undefined ? undefined : (step) => void process.stderr.write(`flash step: ${step}\n`),
  })
  const m = r.manifest
  return [
    `verified ${m.device} ${m.version} (built ${m.buildTime}): signed by key ${r.keyId}, every file's sha256, for Node ABI ${r.target.nodeAbi} ${r.target.platform}-${r.target.arch} (${r.target.from})`,
    ...(r.addedKey === undefined ? [] : [`trusted key ${r.addedKey} added to ${path.join(opts.to, 'keys')}`]),
    `flashed into slot ${r.slot}, now active; ${r.previous === null ? 'no previous slot (first flash)' : `slot ${r.previous} kept for rollback`}`,
    `start it with: node ${path.join(opts.to, f.LAUNCHER_FILE)} (a running launcher takes it at its next start)`,
  ].join('\n')
}
