// `outpost flash <bundle-dir> --to <path>` and `outpost flash status --to <path>`: a built bundle
// onto a device's filesystem in A/B slots, and what the device has (build/flash.ts). With
// `--device <id> --gateway <url>` instead of --to: over the air, through the gateway (build/ota.ts),
// with a progress display (listr2).
import { existsSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { ErrorCode, errorMessage, isOutpostError, OutpostError } from '../runtime/errors.js'
import type { FlashArgs, OtaArgs } from './cli-args.js'
import { sayWhenInterrupted } from './interrupted.js'

export const FLASH_HELP = `outpost flash — install a device bundle onto a device's filesystem or over the air (A/B slots, rollback)

Usage:
  outpost flash <bundle-dir> --to <path> [--key <public.pem>] [--change-device]
  outpost flash <bundle-dir> --device <id> --gateway <url> [--token T] [--chunk-kb N] [--wait S] [--change-device]
  outpost flash status --to <path> [--json]
  outpost flash status --device <id> --gateway <url> [--token T] [--json]

  <bundle-dir>       a bundle directory from outpost build (dist/bundles/<device>)
  --to PATH          the device's filesystem: an SD card mount or a rootfs folder (it must exist)
  --key FILE         a public key to trust (signing-key.pub.pem): the bundle may be signed by it, and
                     the device keeps it in <path>/keys/ once flashed. A device that trusts no key
                     refuses every bundle
  --change-device    flash a bundle of another device than the one there (a display's onto a thermo):
                     refused without it, as most likely a slip
  --json             for status: JSON output
  --device ID        over the air: the device's id, through the gateway (instead of --to)
  --gateway URL      the gateway's HTTP face, e.g. http://gateway:8080 (http.port in its config)
  --token T          the gateway's bearer token (http.token); default OUTPOST_HTTP_TOKEN
  --chunk-kb N       KB per chunk, 1 to 176 (default 64)
  --wait S           how long to wait for the new bundle to report ready or be rolled back (default 300)

The bundle is verified first (signature by a trusted key, every file's sha256, the device's Node
ABI, platform and architecture): refused, nothing on the device changes. Then it is copied into
the slot that is not active, flushed, verified again there, and <path>/active.json is switched to
it by one rename; the other slot is kept for rollback. Killed at any moment, the device starts the
old bundle or the new one. The device runs it with: node <path>/launcher.mjs (see docs/build.md).

Over the air the device (started by that launcher) does the same: it verifies the bundle with its
own keys before anything is switched, installs it into its inactive slot and restarts into it; the
launcher keeps it once it reports ready, and rolls it back otherwise. An interrupted transfer
resumes where it stopped, also when the same command is run again. Exit code 0 once the new bundle
runs, 1 when it was refused or rolled back (the reason is on the last line).
`

type FlashModule = typeof import('../build/flash.js')
type OtaModule = typeof import('../build/ota.js')

/** A module of build/: compiled beside this file (dist/build/), else its TypeScript source through tsx (as outpost build loads build/). */
async function loadBuildPart<T>(name: 'flash' | 'ota', load: () => Promise<T>): Promise<T> {
  try {
    return await load()
  } catch (err) {
    if ((err as { code?: string }).code !== 'ERR_MODULE_NOT_FOUND' || !errorMessage(err).includes(`${path.sep}build${path.sep}${name}.js`)) throw err
  }
  const above = fileURLToPath(new URL('..', import.meta.url))
  const root = existsSync(path.join(above, 'package.json')) ? above : path.dirname(path.resolve(above))
  const source = path.join(root, 'build', `${name}.ts`)
  if (!existsSync(source)) throw new OutpostError(ErrorCode.BAD_ARGUMENT, `this copy of outpost has no build/${name} module`)
  const { tsImport } = (await import('tsx/esm/api')) as { tsImport: (specifier: string, parent: string) => Promise<unknown> }
  return (await tsImport(pathToFileURL(source).href, import.meta.url)) as T
}
const loadFlashModule = (): Promise<FlashModule> => loadBuildPart('flash', () => import('../build/flash.js'))
const loadOtaModule = (): Promise<OtaModule> => loadBuildPart('ota', () => import('../build/ota.js'))

/** A slot in one line: `slot b: thermo 0.1.0, built …`. */
const slotLine = (s: { slot: string; device?: string; version?: string; buildTime?: string; problem?: string }): string =>
  `slot ${s.slot}: ${s.device ?? '?'} ${s.version ?? '?'}, built ${s.buildTime ?? '?'}${s.problem === undefined ? '' : ` — does not start: ${s.problem}`}`

/**
 * Flashes, or tells the device's status.
 * @returns what to print
 * @throws BAD_ARGUMENT (a wrong --key), UNKNOWN_KEY (the device trusts no key), and the refusals of verifyBundle
 */
export async function runFlashCommand(opts: FlashArgs, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  if (opts.ota !== undefined) return opts.verb === 'status' ? otaStatus(opts.ota, opts.json) : flashOverTheAir(opts.bundle!, opts.ota, env, opts.changeDevice)
  const f = await loadFlashModule()
  if (opts.verb === 'status') {
    const s = await f.deviceStatus(opts.to)
    if (opts.json) return JSON.stringify(s, null, 2)
    const lines = [`device at ${s.root}`]
    const d = s.damaged
    if (d !== undefined) {
      const starts = d.none !== undefined ? 'the launcher starts nothing: flash a bundle to repair it' : `the launcher starts slot ${s.pointer!.slot} (${d.because}) and replaces it, keeping it as active.json.damaged`
      lines.push(`  pointer:  damaged: ${d.none ?? d.problem}; ${starts}`)
    }
    if (s.pointer === undefined || s.active === undefined) {
      if (d === undefined) lines.push('  nothing flashed yet (no active.json)')
    } else {
      const p = s.pointer
      const trial = d !== undefined ? 'recovered from the damaged active.json' : p.confirmed ? 'kept (it reported ready since the switch)' : `new: not kept yet (the launcher keeps it once it has reported ready and run its probation, 10 s by default), started ${p.starts} time${p.starts === 1 ? '' : 's'} since the switch at ${p.switchedAt}`
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
    changeDevice: opts.changeDevice,
    stepDelayMs,
    // Only when slowed down (testing interrupted flashing): each step, as it starts.
    onStep: stepDelayMs === undefined ? undefined : (step) => void process.stderr.write(`flash step: ${step}\n`),
  })
  const m = r.manifest
  return [
    `verified ${m.device} ${m.version} (built ${m.buildTime}): signed by key ${r.keyId}, every file's sha256, for Node ABI ${r.target.nodeAbi} ${r.target.platform}-${r.target.arch} (${r.target.from})`,
    ...(r.addedKey === undefined ? [] : [`trusted key ${r.addedKey} added to ${path.join(opts.to, 'keys')}`]),
    ...(r.damaged === undefined ? [] : [`active.json was damaged (${r.damaged}): replaced, its bytes kept as ${path.join(opts.to, 'active.json.damaged')}`]),
    `flashed into slot ${r.slot}, now active; ${r.previous === null ? 'no previous slot (first flash)' : `slot ${r.previous} kept for rollback`}`,
    `start it with: node ${path.join(opts.to, f.LAUNCHER_FILE)} (a running launcher takes it at its next start)`,
  ].join('\n')
}

/** Bytes as KB or MB, one decimal. */
const size = (n: number): string => (n >= 1024 * 1024 ? `${(n / 1024 / 1024).toFixed(1)} MB` : `${(n / 1024).toFixed(1)} KB`)

/** A progress bar of `width` cells for a fraction from 0 to 1. */
const bar = (fraction: number, width = 24): string => {
  const full = Math.round(Math.min(1, Math.max(0, fraction)) * width)
  return `[${'█'.repeat(full)}${'░'.repeat(width - full)}]`
}

/** A whole number of milliseconds from a testing variable, or undefined. */
function delayOf(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const v = env[name]
  if (v === undefined || v === '') return undefined
  const n = Number(v)
  if (!(Number.isSafeInteger(n) && n >= 0)) throw new OutpostError(ErrorCode.BAD_ARGUMENT, `${name} "${v}" is not accepted; expected a whole number of milliseconds`)
  return n
}

/**
 * Over the air: each phase a step of the progress display (live on a terminal, a line per step
 * and per tenth of the transfer otherwise).
 * @returns the last line, once the new bundle runs
 * @throws the device's refusal (BAD_SIGNATURE, HASH_MISMATCH, …), the gateway's (DEVICE_OFFLINE, NOT_AUTHENTICATED, …),
 *   or an error saying it was rolled back and why
 */
async function flashOverTheAir(bundle: string, o: OtaArgs, env: NodeJS.ProcessEnv, changeDevice: boolean): Promise<string> {
  const ota = await loadOtaModule()
  const chunkBytes = o.chunkKb === undefined ? undefined : o.chunkKb * 1024
  const session = ota.otaSession(bundle, {
    gateway: o.gateway, device: o.device, token: o.token, chunkBytes, waitMs: o.waitS === undefined ? undefined : o.waitS * 1000,
    chunkDelayMs: delayOf(env, 'OUTPOST_OTA_CHUNK_DELAY_MS'), changeDevice,
  })
  const tty = process.stdout.isTTY === true
  let failure: unknown
  let result: import('../build/ota.js').OtaResult | undefined
  let local: import('../build/ota.js').LocalBundle | undefined
  let committed: { slot: string; restarting: boolean } | undefined
  /** A step: the display marks it failed with a short word, the error itself becomes the last line. */
  const step = (title: string, run: (task: { title: string; output: string }) => Promise<void>) => ({
    title,
    task: async (_ctx: unknown, task: { title: string; output: string }) => {
      try {
        await run(task)
      } catch (err) {
        failure = err
        throw new Error(isOutpostError(err) ? err.code : result?.outcome === 'rolled-back' ? 'rolled back' : 'failed')
      }
    },
  })
  const { Listr } = await import('listr2')
  const tasks = new Listr([
    step(`check ${bundle}`, async (t) => {
      const b = (local = await session.verify())
      t.title = `checked ${b.manifest.device} ${b.manifest.version} (built ${b.manifest.buildTime}): ${b.files.length} file${b.files.length === 1 ? '' : 's'}, ${size(b.bytes)}, signed by key ${b.keyId}`
    }),
    step(`begin: device ${o.device} through ${o.gateway}`, async (t) => {
      const v = await session.begin()
      const total = v.files.reduce((n, f) => n + f.chunks, 0)
      t.title = `device ${o.device} takes it: ${v.missing} of ${total} chunks of ${size(v.chunkBytes)} to send${v.missing < total ? ` (${total - v.missing} there already: resuming)` : ''}`
    }),
    step('transfer', async (t) => {
      const started = Date.now()
      let shownAt = 0
      let shownTenth = -1
      let firstBytes: number | undefined
      const p = await session.transfer((p) => {
        firstBytes ??= p.bytes
        const fraction = p.bytesTotal === 0 ? 1 : p.bytes / p.bytesTotal
        const tenth = Math.floor(fraction * 10)
        const now = Date.now()
        // On a terminal the bar moves; in a log, a line per tenth (and each interruption).
        if (p.resuming === undefined && (tty ? now - shownAt < 100 && fraction < 1 : tenth === shownTenth)) return
        shownAt = now
        shownTenth = tenth
        const rate = p.sent > 0 && now > started ? `, ${size((p.bytes - firstBytes) / ((now - started) / 1000))}/s` : ''
        t.output = p.resuming !== undefined
          ? `interrupted (${p.resuming}); resuming with what the device lacks`
          : `${bar(fraction)} ${Math.floor(fraction * 100)}%  ${size(p.bytes)} of ${size(p.bytesTotal)}, ${p.sent + p.alreadyThere}/${p.total} chunks${rate}`
      })
      const s = (Date.now() - started) / 1000
      t.title = `sent ${p.sent} chunks${p.alreadyThere > 0 ? ` (${p.alreadyThere} were there already)` : ''} in ${s.toFixed(1)} s`
    }),
    step('commit: the device verifies the bundle, installs it into its inactive slot and restarts', async (t) => {
      const c = (committed = await session.commit())
      t.title = `verified by the device and installed into slot ${c.slot}${c.restarting ? '; it restarts into it' : '; it takes it at its next start'}`
    }),
    step('wait for the new bundle to report ready', async (t) => {
      if (committed?.restarting === false) return void (t.title = 'not waited for: the device was not started by a launcher it can ask to restart it')
      result = await session.outcome((what) => {
        if (t.output !== what) t.output = what
      })
      if (result.outcome === 'rolled-back') throw new Error(`rolled back: ${result.reason ?? 'no reason given'}`)
      t.title = `slot ${result.slot} reported ready and is kept`
    }),
  ], { exitOnError: true, registerSignalListeners: false, rendererOptions: { collapseErrors: false }, fallbackRenderer: 'simple' })
  const quiet = sayWhenInterrupted(`device ${o.device} keeps the bundle it runs; the same command again resumes the transfer where it stopped`)
  try {
    await tasks.run()
    quiet()
  } catch (err) {
    quiet()
    const e = failure ?? err
    if (result?.outcome === 'rolled-back') {
      const r = result.running
      throw new Error(`rolled back: ${local!.manifest.device} ${local!.manifest.version} in slot ${result.slot} was not kept (${result.reason ?? 'no reason given'}); device ${o.device} runs ${r.slot === null ? 'its previous bundle' : `slot ${r.slot}${r.version === undefined ? '' : ` (${r.device} ${r.version}, built ${r.buildTime})`}`} again`)
    }
    throw asRemote(e)
  }
  if (result === undefined) return `installed ${local!.manifest.device} ${local!.manifest.version} into slot ${committed!.slot} of ${o.device}: it starts at the device's next start`
  const r = result
  const rate = r.transferSeconds > 0 ? `, ${size(r.bytesSent / r.transferSeconds)}/s` : ''
  return `flashed ${r.manifest.device} ${r.manifest.version} over the air to ${o.device}: it runs from slot ${r.slot}, ${r.previous === null ? 'no previous slot' : `slot ${r.previous} kept for rollback`} (${r.sent} chunks sent, ${r.alreadyThere} already there; ${size(r.bytesSent)}${rate})`
}

/**
 * A BAD_ARGUMENT the gateway or the device answered (a request it refuses in its present state) is
 * not a mistake on this command line: the same line, but exit code 1, not 2.
 */
const asRemote = (err: unknown): unknown => (isOutpostError(err, ErrorCode.BAD_ARGUMENT) ? new Error(`${err.code}: ${err.message}`) : err)

/** `outpost flash status --device <id> --gateway <url>`: what the device's ota@1 status says. */
async function otaStatus(o: OtaArgs, json: boolean): Promise<string> {
  const ota = await loadOtaModule()
  const s = await ota.otaCaller(o)<import('../build/ota.js').OtaStatus>('status', {}).catch((err: unknown) => {
    throw asRemote(err)
  })
  if (json) return JSON.stringify(s, null, 2)
  const r = s.running
  const c = s.committed
  const t = s.transfer
  const l = s.last
  return [
    `device ${o.device} through ${o.gateway}`,
    `  running:  ${r.slot === null ? 'a bundle not started from a slot' : `slot ${r.slot}: ${r.device ?? '?'} ${r.version ?? '?'}, built ${r.buildTime ?? '?'}`}`,
    `  commit:   ${c === null ? 'none over the air yet' : `${c.device} ${c.version} (bundle ${c.bundleId}) into slot ${c.slot} at ${c.switchedAt}: ${c.outcome === 'rolled-back' ? `rolled back: ${c.reason ?? '?'}` : c.outcome === 'success' ? 'reported ready, kept' : 'not ready yet'}`}`,
    `  transfer: ${t === null ? 'none under way' : `${t.device} ${t.version} (bundle ${t.bundleId}): ${t.missing} of ${t.files.reduce((n, f) => n + f.chunks, 0)} chunks missing`}`,
    `  last:     ${l === null ? 'none recorded by the launcher' : `${l.outcome} at ${l.at}${l.slot === null ? '' : ` (slot ${l.slot})`}${l.reason === undefined ? '' : `: ${l.reason}`}`}`,
  ].join('\n')
}
