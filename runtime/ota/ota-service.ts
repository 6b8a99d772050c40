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
//
// The device's disk may be full or read-only (errors=remount-ro) at any step: each such failure is
// a typed error (STORE_FULL, STORE_READ_ONLY, STORE_FAILED) that names no file and says what was
// kept, never a crash and never a switch. A transfer that ran out of space is discarded, so the
// space goes back to the device's own data; one the disk would not take (read-only) is kept to resume.
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, rmSync } from 'node:fs'
import path from 'node:path'
import { defineService } from '../contract/index.js'
import { ErrorCode, isOutpostError, OutpostError } from '../errors.js'
import { fsp, nodeCrypto } from '../lazy-builtin.js'
import {
  checkManifest, DEVICE_DIR_ENV, DEVICE_SLOT_ENV, loadPointer, POINTER_FILE, readState, readTrustedKeys, RESTART_REQUEST, slotDir, syncDir, verifyDir, verifySlot, writeFileAtomic,
  type SlotManifest, type SlotName,
} from '../launcher/launcher.js'
import { otaContract } from './contract.js'
import { chooseInactiveSlot, placeSlot, switchToSlot, takeFlashLock } from './install.js'

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
/** The typed error for a failure of the device's disk, or undefined for any other error. Names no file (it goes to a remote caller). */
const diskError = (err: unknown, what: string, after: (full: boolean) => string): OutpostError | undefined => {
  const os = (err as { code?: unknown } | null)?.code
  if (isOutpostError(err) || typeof os !== 'string' || !/^E[A-Z]+$/.test(os)) return undefined
  const full = os === 'ENOSPC' || os === 'EDQUOT'
  const ro = os === 'EROFS' || os === 'EACCES' || os === 'EPERM'
  const code = full ? ErrorCode.STORE_FULL : ro ? ErrorCode.STORE_READ_ONLY : ErrorCode.STORE_FAILED
  return fail(code, `the device's disk ${full ? 'is full' : ro ? 'is read-only' : `failed (${os})`}: ${what}; ${after(full)}`)
}
/** Ignores a failure: cleaning up after an error that is already being reported. */
const quietly = async (f: () => unknown): Promise<void> => {
  try {
    await f()
  } catch {
    // The error reported is the first one.
  }
}
/** Bytes `size` takes on a disk of blocks of `block` bytes. */
const blocks = (size: number, block: number): number => Math.ceil(size / block) * block

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
  /** The transfer last discarded because the disk was full, and why: its late chunks are told so (not just NOT_FOUND, which a sender retries). */
  let lost: { bundleId: string; error: OutpostError } | undefined

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
    // A line cut short (the disk filled or the power went while it was written) is left out: that chunk is sent again.
    for (const line of log.split('\n')) {
      const m = /^(\S+) (\d+) ([0-9a-f]{64})$/.exec(line)
      if (m !== null) transfer.present.get(m[1]!)?.set(Number(m[2]), m[3]!)
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
    if (transfer?.bundleId !== bundleId && lost?.bundleId === bundleId) throw lost.error
    if (transfer?.bundleId !== bundleId) throw fail(ErrorCode.NOT_FOUND, `this device receives no bundle ${bundleId}${transfer === undefined ? '' : ` (it receives ${transfer.bundleId})`}; begin first`)
    if (committing) throw fail(ErrorCode.BAD_ARGUMENT, `bundle ${bundleId} is being committed`)
    return transfer
  }
  /**
   * The slot an install overwrites must be neither the one running (a bundle flashed with --to waits
   * for a restart) nor the one a running bundle on trial would be rolled back to.
   */
  const checkInactive = (): void => {
    // A pointer damaged while this bundle runs: which slot is active is not known here (the
    // launcher started this one, and repairs the pointer at its next start).
    const { pointer: p, damaged } = loadPointer(root)
    if (damaged !== undefined) throw fail(ErrorCode.STORE_FAILED, `this device's boot pointer (active.json) is damaged; ${keep}: restart the device (its launcher repairs the pointer) and flash again`)
    if (p === undefined) return
    if (runs !== undefined && p.slot !== runs) throw fail(ErrorCode.BAD_ARGUMENT, `this device runs slot ${runs} but slot ${p.slot} is active (flashed, not started yet): restart the device first`)
    if (!p.confirmed && p.previous !== null) throw fail(ErrorCode.BAD_ARGUMENT, `slot ${p.slot} is not kept yet (its launcher waits for it to report ready) and slot ${p.previous} is where it goes back to: try again once it is kept`)
  }
  const discard = async (): Promise<void> => {
    transfer = undefined
    for (const f of [staged, transferFile, logFile]) await fsp().rm(f, { recursive: true, force: true })
  }
  /** The transfer `t` ran out of disk: it is dropped at once (chunks in flight are told why), then its files are removed. */
  const discardFull = async (t: Transfer, error: OutpostError): Promise<void> => {
    if (transfer !== t) return
    lost = { bundleId: t.bundleId, error }
    await quietly(discard)
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
        lost = undefined
        const keepRunning = `nothing was received: ${keep.slice('nothing was switched: '.length)}`
        try {
          await discard()
          // What the transfer takes on this disk: each file in whole blocks, its manifest, signature,
          // transfer.json and a chunks.log line per chunk, and a little room besides.
          const disk = await fsp().statfs(root)
          const block = disk.bsize > 0 ? disk.bsize : 4096
          const lines = p.files.reduce((n, f) => n + Math.ceil(f.size / p.chunkBytes) * (f.name.length + 80), 0)
          const needs = p.files.reduce((n, f) => n + blocks(f.size, block), 0) + blocks(p.manifest.length, block) + blocks(p.signature.length, block) +
            blocks(JSON.stringify(p.files).length + 200, block) + blocks(lines, block) + 4 * block
          const free = disk.bavail * disk.bsize
          if (free < needs) throw fail(ErrorCode.STORE_FULL, `${where} needs ${needs} bytes; ${free} are free on the device; ${keepRunning}`)
          await fsp().mkdir(staged, { recursive: true })
          await fsp().writeFile(path.join(staged, 'manifest.json'), p.manifest)
          await fsp().writeFile(path.join(staged, 'manifest.sig'), p.signature)
          for (const f of p.files) {
            const fh = await fsp().open(path.join(staged, f.name), 'w')
            try {
              await fh.truncate(f.size)
            } finally {
              await fh.close()
            }
          }
          await fsp().writeFile(logFile, '')
          writeFileAtomic(transferFile, JSON.stringify({ bundleId: p.bundleId, chunkBytes: p.chunkBytes, files: p.files }))
        } catch (err) {
          const e = diskError(err, `${where} could not be staged`, () => keepRunning)
          if (e === undefined) throw err
          // Nothing half made is kept (as far as the disk lets it be removed).
          await quietly(discard)
          ctx.log.warn({ bundleId: p.bundleId, code: e.code }, `over the air: ${e.message}`)
          throw e
        }
        transfer = { bundleId: p.bundleId, chunkBytes: p.chunkBytes, files: p.files, manifest: m, present: new Map(p.files.map((f) => [f.name, new Map()])) }
        ctx.log.info({ bundleId: p.bundleId, bytes: total }, `over the air: receiving ${m.device} ${m.version}`)
        return view(transfer)
      },

      chunk: async (p, ctx) => {
        const t = current(p.bundleId)
        const f = t.files.find((x) => x.name === p.file)
        if (f === undefined || p.index >= chunks(t, f)) throw fail(ErrorCode.BAD_ARGUMENT, `bundle ${p.bundleId} has no chunk ${p.index} of ${p.file}`)
        const data = Buffer.from(p.data, 'base64')
        const size = Math.min(t.chunkBytes, f.size - p.index * t.chunkBytes)
        if (data.toString('base64') !== p.data || data.byteLength !== size || sha256(data) !== p.sha256) {
          throw fail(ErrorCode.HASH_MISMATCH, `chunk ${p.index} of ${p.file} does not match its sha256 (or is not ${size} bytes of base64); nothing was written`)
        }
        const present = t.present.get(f.name)!
        const had = present.get(p.index)
        if (had === p.sha256) return { written: false, missing: missing(t) }
        // A bundle's chunk has one content: other bytes for a chunk already here are not the bundle's (and
        // would only grow chunks.log and overwrite what arrived).
        if (had !== undefined) throw fail(ErrorCode.HASH_MISMATCH, `chunk ${p.index} of ${p.file} was received already, with other bytes; nothing was written (begin again to start over)`)
        try {
          const fh = await fsp().open(path.join(staged, f.name), 'r+')
          try {
            // A disk that fills takes part of a write without an error; the rest is written again, and
            // only then does the disk say ENOSPC. A chunk is never logged as written unless it all was.
            for (let at = 0; at < data.byteLength;) at += (await fh.write(data, at, data.byteLength - at, p.index * t.chunkBytes + at)).bytesWritten
          } finally {
            await fh.close()
          }
          if (transfer !== t) current(p.bundleId)
          if (transfer !== t) throw fail(ErrorCode.NOT_FOUND, `the transfer of bundle ${p.bundleId} was replaced meanwhile`)
          await fsp().appendFile(logFile, `${f.name} ${p.index} ${p.sha256}\n`)
        } catch (err) {
          const e = diskError(err, `chunk ${p.index} of ${p.file} could not be written`, (full) => full
            ? `the transfer was discarded to give its space back (${keep}); free room on the device and flash again`
            : `${keep}; the chunks received are kept: make the disk writable and flash again to resume`)
          if (e === undefined) throw err
          if (e.code === ErrorCode.STORE_FULL) await discardFull(t, e)
          else if (transfer !== t) current(p.bundleId)
          ctx.log.warn({ bundleId: p.bundleId, code: e.code }, `over the air: ${e.message}`)
          throw e
        }
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
            await quietly(discard)
            throw problemError(checked.problem, `${keep}; the bundle received was discarded`)
          }
          // The files were written chunk by chunk: flushed before their folder becomes a slot.
          for (const name of ['manifest.json', 'manifest.sig', ...t.files.map((f) => f.name)]) {
            const fd = openSync(path.join(staged, name), 'r')
            fsyncSync(fd)
            closeSync(fd)
          }
          // Until the pointer is switched, a failure (a full or read-only disk) puts everything back as
          // it was: the received bundle into ota/ again, the last commit's record as it was.
          let moved: { slot: SlotName; incoming: string } | undefined
          /** committed.json as it was, once it was replaced. */
          let committedBefore: { text: string | undefined } | undefined
          let next: ReturnType<typeof switchToSlot>
          let slot: SlotName
          const m = t.manifest
          const switchedAt = new Date().toISOString()
          // Not while another process flashes this device (`outpost flash --to` on it): STORE_IN_USE, the bundle received kept.
          let release: (() => void) | undefined
          try {
            release = takeFlashLock(root)
            const chosen = await chooseInactiveSlot(root)
            slot = chosen.slot
            await fsp().rename(staged, chosen.incoming)
            moved = { slot, incoming: chosen.incoming }
            syncDir(chosen.incoming)
            await placeSlot(root, slot, chosen.incoming)
            const inSlot = verifySlot(root, slot)
            if ('problem' in inSlot) throw problemError(inSlot.problem, keep)
            const before = existsSync(committedFile) ? readFileSync(committedFile, 'utf8') : undefined
            writeFileAtomic(committedFile, JSON.stringify({ bundleId, device: m.device, version: m.version, buildTime: m.buildTime, slot, switchedAt }))
            committedBefore = { text: before }
            next = switchToSlot(root, slot, chosen.pointer, switchedAt)
          } catch (err) {
            let kept = true
            if (moved !== undefined) {
              try {
                await fsp().rename(existsSync(moved.incoming) ? moved.incoming : slotDir(root, moved.slot), staged)
                syncDir(dir)
              } catch {
                kept = false
              }
            }
            // No record of a commit that did not happen: the one before, or none when it cannot be written back.
            const text = committedBefore?.text
            if (committedBefore !== undefined) await quietly(() => (text === undefined ? rmSync(committedFile, { force: true }) : writeFileAtomic(committedFile, text)))
            if (committedBefore !== undefined && text !== undefined && readJson<Committed>(committedFile)?.switchedAt === switchedAt) await quietly(() => rmSync(committedFile, { force: true }))
            // The temporary file of a pointer switch that failed (this process's).
            await quietly(() => rmSync(path.join(root, `${POINTER_FILE}.${process.pid}.tmp`), { force: true }))
            if (!kept) await quietly(discard)
            const e = diskError(err, `bundle ${bundleId} could not be installed`, (full) => `${keep}; ${kept
              ? `the bundle received is kept: ${full ? 'free room on the device' : 'make the disk writable'} and flash again`
              : 'the bundle received could not be kept: flash it again'}`)
            if (e === undefined) throw err
            ctx.log.warn({ bundleId, code: e.code }, `over the air: ${e.message}`)
            throw e
          } finally {
            release?.()
          }
          await quietly(discard)
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
