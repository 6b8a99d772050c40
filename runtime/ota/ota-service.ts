// The device's side of over-the-air flashing (ota@1, contract.ts): a bundle arrives in chunks
// through the gateway's command path, is staged in <root>/ota/ beside the slots, is verified in
// full (signature by a trusted key, every file's sha256, this Node) before anything is switched,
// is installed into the inactive slot as `outpost flash --to` installs (install.ts), and the
// launcher is asked to restart the device into it. The launcher's rule then applies: the new
// bundle reports ready within its deadline or is rolled back (runtime/launcher/launcher.ts).
// Every device bundle carries this file: it is kept small.
//
//   <root>/ota/transfer.json   the transfer under way: bundle id, chunk size, files
//   <root>/ota/chunks.log      a line per chunk written: <file> <index> <sha256>
//   <root>/ota/bundle/         the bundle directory being received (its files at their full size)
//   <root>/ota/committed.json  the last bundle committed: its slot and when it was switched to
import { closeSync, fsyncSync, openSync, readFileSync } from 'node:fs'
import { appendFile, mkdir, open, rename, rm, statfs, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { defineService } from '../contract/index.js'
import { ErrorCode, OutpostError } from '../errors.js'
import { nodeCrypto } from '../lazy-builtin.js'
import {
  checkManifest, DEVICE_DIR_ENV, DEVICE_SLOT_ENV, readPointer, readState, readTrustedKeys, RESTART_REQUEST, slotDir, syncDir, verifyDir, verifySlot, writeFileAtomic,
  type SlotManifest, type SlotName,
} from '../launcher/launcher.js'
import { otaContract } from './contract.js'
import { chooseInactiveSlot, placeSlot, switchToSlot } from './install.js'

/** The most a bundle may weigh, all files together, bytes. */
const MAX_BUNDLE_BYTES = 256 * 1024 * 1024

export interface OtaServiceOptions {
  /** The device's folder (the launcher's; OUTPOST_DEVICE_DIR). */
  root: string
  /** The slot this process runs from (OUTPOST_DEVICE_SLOT), when known. */
  slot?: SlotName
  /** Asks the launcher to restart the device into the active slot; default: over the IPC channel the launcher opened. */
  restart?: () => void
}

interface FileEntry { name: string; size: number; sha256: string }
/** A transfer: what begin was given, and per file the chunks written (index → sha256). */
interface Transfer { bundleId: string; chunkBytes: number; files: FileEntry[]; manifest: SlotManifest; present: Map<string, Map<number, string>> }
interface Committed { bundleId: string; device: string; version: string; buildTime: string; slot: SlotName; switchedAt: string }

const sha256 = (b: Uint8Array): string => nodeCrypto().createHash('sha256').update(b).digest('hex')
const fail = (code: ErrorCode, message: string): OutpostError => new OutpostError(code, message)
const readJson = <T>(file: string): T | undefined => {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T
  } catch {
    return undefined
  }
}
/** A launcher problem (`CODE: text`) as an error with that code, `after` said after it. */
const problemError = (problem: string, after: string): OutpostError => {
  const m = /^([A-Z_]+): (.*)$/s.exec(problem)
  return fail(m !== null && m[1]! in ErrorCode ? (m[1] as ErrorCode) : ErrorCode.INTERNAL, `${m?.[2] ?? problem}; ${after}`)
}

/** The ota@1 service of a device started by the launcher from `opts.root`. */
export function createOtaService(opts: OtaServiceOptions) {
  const { root, slot: runs } = opts
  const dir = path.join(root, 'ota')
  const staged = path.join(dir, 'bundle')
  const transferFile = path.join(dir, 'transfer.json')
  const logFile = path.join(dir, 'chunks.log')
  const committedFile = path.join(dir, 'committed.json')
  const own = runs === undefined ? undefined : readJson<SlotManifest>(path.join(slotDir(root, runs), 'manifest.json'))
  const running = { slot: runs ?? null, ...(own === undefined ? {} : { device: own.device, version: own.version, buildTime: own.buildTime }) }
  const keep = `nothing was switched: the device keeps running ${runs === undefined ? 'its bundle' : `slot ${runs}`}`
  let committing = false

  // The transfer under way as the files left it: a device restarted in the middle of one resumes it.
  let transfer: Transfer | undefined
  const saved = readJson<Omit<Transfer, 'present' | 'manifest'>>(transferFile)
  const savedManifest = readJson<SlotManifest>(path.join(staged, 'manifest.json'))
  if (saved !== undefined && savedManifest !== undefined) {
    transfer = { ...saved, manifest: savedManifest, present: new Map(saved.files.map((f) => [f.name, new Map()])) }
    let log = ''
    try {
      log = readFileSync(logFile, 'utf8')
    } catch {
      // No chunk yet.
    }
    for (const line of log.split('\n')) {
      const [file, index, hash] = line.split(' ')
      if (hash !== undefined) transfer.present.get(file!)?.set(Number(index), hash)
    }
  }

  const chunks = (t: Transfer, f: FileEntry): number => Math.ceil(f.size / t.chunkBytes)
  const missing = (t: Transfer): number => t.files.reduce((n, f) => n + chunks(t, f) - t.present.get(f.name)!.size, 0)
  const view = (t: Transfer) => ({
    bundleId: t.bundleId, device: t.manifest.device, version: t.manifest.version, buildTime: t.manifest.buildTime, chunkBytes: t.chunkBytes,
    files: t.files.map((f) => ({ name: f.name, size: f.size, chunks: chunks(t, f), present: [...t.present.get(f.name)!.keys()].sort((a, b) => a - b) })),
    missing: missing(t),
  })
  const current = (bundleId: string): Transfer => {
    if (transfer?.bundleId !== bundleId) throw fail(ErrorCode.NOT_FOUND, `this device receives no bundle ${bundleId}${transfer === undefined ? '' : ` (it receives ${transfer.bundleId})`}; begin first`)
    if (committing) throw fail(ErrorCode.BAD_ARGUMENT, `bundle ${bundleId} is being committed`)
    return transfer
  }
  /**
   * The slot an install overwrites must be neither the one running (a bundle flashed with --to waits
   * for a restart) nor the one a running bundle on trial would be rolled back to.
   */
  const checkInactive = (): void => {
    const p = readPointer(root)
    if (p === undefined) return
    if (runs !== undefined && p.slot !== runs) throw fail(ErrorCode.BAD_ARGUMENT, `this device runs slot ${runs} but slot ${p.slot} is active (flashed, not started yet): restart the device first`)
    if (!p.confirmed && p.previous !== null) throw fail(ErrorCode.BAD_ARGUMENT, `slot ${p.slot} is not kept yet (its launcher waits for it to report ready) and slot ${p.previous} is where it goes back to: try again once it is kept`)
  }
  const discard = async (): Promise<void> => {
    transfer = undefined
    for (const f of [staged, transferFile, logFile]) await rm(f, { recursive: true, force: true })
  }

  return defineService(otaContract, {
    commands: {
      begin: async (p, ctx) => {
        if (committing) throw fail(ErrorCode.BAD_ARGUMENT, 'a commit is under way on this device')
        const where = `bundle ${p.bundleId}`
        let checked: ReturnType<typeof checkManifest>
        try {
          checked = checkManifest(Buffer.from(p.manifest), Buffer.from(p.signature), where, readTrustedKeys(root))
        } catch {
          throw fail(ErrorCode.HASH_MISMATCH, `the manifest of ${where} is not JSON; nothing was received`)
        }
        if ('problem' in checked) throw problemError(checked.problem, 'nothing was received')
        const m = checked.manifest
        const listed = new Map(m.files.map((f) => [f.path, f]))
        if (p.files.length !== m.files.length || !p.files.every((f) => listed.get(f.name)?.size === f.size && listed.get(f.name)?.sha256 === f.sha256)) {
          throw fail(ErrorCode.HASH_MISMATCH, `the files of ${where} are not those its manifest lists; nothing was received`)
        }
        const total = p.files.reduce((n, f) => n + f.size, 0)
        if (total > MAX_BUNDLE_BYTES) throw fail(ErrorCode.BAD_ARGUMENT, `${where} is ${total} bytes; at most ${MAX_BUNDLE_BYTES} are taken`)
        checkInactive()
        if (transfer?.bundleId === p.bundleId && transfer.chunkBytes === p.chunkBytes) return view(transfer)
        await discard()
        await mkdir(staged, { recursive: true })
        const free = await statfs(dir)
        if (free.bavail * free.bsize < total) throw fail(ErrorCode.STORE_FULL, `${where} needs ${total} bytes; ${free.bavail * free.bsize} are free on the device`)
        await writeFile(path.join(staged, 'manifest.json'), p.manifest)
        await writeFile(path.join(staged, 'manifest.sig'), p.signature)
        for (const f of p.files) {
          const fh = await open(path.join(staged, f.name), 'w')
          await fh.truncate(f.size)
          await fh.close()
        }
        await writeFile(logFile, '')
        writeFileAtomic(transferFile, JSON.stringify({ bundleId: p.bundleId, chunkBytes: p.chunkBytes, files: p.files }))
        transfer = { bundleId: p.bundleId, chunkBytes: p.chunkBytes, files: p.files, manifest: m, present: new Map(p.files.map((f) => [f.name, new Map()])) }
        ctx.log.info({ bundleId: p.bundleId, bytes: total }, `over the air: receiving ${m.device} ${m.version}`)
        return view(transfer)
      },

      chunk: async (p) => {
        const t = current(p.bundleId)
        const f = t.files.find((x) => x.name === p.file)
        if (f === undefined || p.index >= chunks(t, f)) throw fail(ErrorCode.BAD_ARGUMENT, `bundle ${p.bundleId} has no chunk ${p.index} of ${p.file}`)
        const data = Buffer.from(p.data, 'base64')
        const size = Math.min(t.chunkBytes, f.size - p.index * t.chunkBytes)
        if (data.toString('base64') !== p.data || data.byteLength !== size || sha256(data) !== p.sha256) {
          throw fail(ErrorCode.HASH_MISMATCH, `chunk ${p.index} of ${p.file} does not match its sha256 (or is not ${size} bytes of base64); nothing was written`)
        }
        const present = t.present.get(f.name)!
        if (present.get(p.index) === p.sha256) return { written: false, missing: missing(t) }
        const fh = await open(path.join(staged, f.name), 'r+')
        try {
          await fh.write(data, 0, data.byteLength, p.index * t.chunkBytes)
        } finally {
          await fh.close()
        }
        if (transfer !== t) throw fail(ErrorCode.NOT_FOUND, `the transfer of bundle ${p.bundleId} was replaced meanwhile`)
        await appendFile(logFile, `${f.name} ${p.index} ${p.sha256}\n`)
        present.set(p.index, p.sha256)
        return { written: true, missing: missing(t) }
      },

      status: ({ bundleId }) => {
        const c = readJson<Committed>(committedFile)
        const last = readState(root)
        // What became of the last commit: the launcher's outcome since its switch, for its slot.
        const since = last !== undefined && c !== undefined && last.at >= c.switchedAt ? last : undefined
        const ok = since?.outcome === 'success' && since.slot === c!.slot
        const back = since?.outcome === 'rolled-back' && since.from?.slot === c!.slot
        return {
          running,
          transfer: transfer !== undefined && (bundleId === undefined || bundleId === transfer.bundleId) ? view(transfer) : null,
          committed: c === undefined ? null : { ...c, outcome: ok ? 'success' as const : back ? 'rolled-back' as const : 'pending' as const, ...(back ? { reason: since.reason } : {}) },
          // state.json as the launcher wrote it (the contract's schema keeps the fields it names).
          last: last ?? null,
        }
      },

      commit: async ({ bundleId }, ctx) => {
        const t = current(bundleId)
        const left = missing(t)
        if (left > 0) throw fail(ErrorCode.BAD_ARGUMENT, `bundle ${bundleId} lacks ${left} chunks: send them (status lists those present), then commit`)
        committing = true
        try {
          checkInactive()
          const checked = verifyDir(staged, `bundle ${bundleId}`, readTrustedKeys(root))
          if ('problem' in checked) {
            // Bytes that changed on the device's disk after they were checked: the transfer starts over.
            await discard()
            throw problemError(checked.problem, `${keep}; the bundle received was discarded`)
          }
          // The files were written chunk by chunk: flushed before their folder becomes a slot.
          for (const name of ['manifest.json', 'manifest.sig', ...t.files.map((f) => f.name)]) {
            const fd = openSync(path.join(staged, name), 'r')
            fsyncSync(fd)
            closeSync(fd)
          }
          const { slot, pointer, incoming } = await chooseInactiveSlot(root)
          await rename(staged, incoming)
          syncDir(incoming)
          await placeSlot(root, slot, incoming)
          const inSlot = verifySlot(root, slot)
          if ('problem' in inSlot) throw problemError(inSlot.problem, keep)
          const m = t.manifest
          const switchedAt = new Date().toISOString()
          writeFileAtomic(committedFile, JSON.stringify({ bundleId, device: m.device, version: m.version, buildTime: m.buildTime, slot, switchedAt }))
          const next = switchToSlot(root, slot, pointer, switchedAt)
          await discard()
          const restarting = opts.restart !== undefined || process.connected === true
          ctx.log.info({ bundleId, slot }, `over the air: ${m.device} ${m.version} installed into slot ${slot}; ${restarting ? 'restarting into it' : 'it starts at the next start'}`)
          // Once the reply is out, the launcher stops this process and starts the new slot.
          if (restarting) setTimeout(opts.restart ?? (() => process.send!(RESTART_REQUEST)), 300)
          return { slot, previous: next.previous, switchedAt, restarting }
        } finally {
          committing = false
        }
      },
    },
  })
}

/** The ota@1 service when the launcher started this process (OUTPOST_DEVICE_DIR), else none: `services: [..., ...otaWhenLaunched()]`. */
export function otaWhenLaunched(env: NodeJS.ProcessEnv = process.env): ReturnType<typeof createOtaService>[] {
  const root = env[DEVICE_DIR_ENV]
  const slot = env[DEVICE_SLOT_ENV]
  return root === undefined || root === '' ? [] : [createOtaService({ root, slot: slot === 'a' || slot === 'b' ? slot : undefined })]
}
