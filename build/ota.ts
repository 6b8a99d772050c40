// `outpost flash <bundle-dir> --device <id> --gateway <url>`: over-the-air flashing through the
// gateway's HTTP command API (docs/forwarding.md, "Calling device commands") to the device's ota@1
// service (runtime/ota/). In phases, each its own step of the progress display: the bundle is
// checked here, `begin` tells the device what comes (it refuses a bundle it would not run at
// once), the chunks go a few at a time, and after a lost connection or a device that went away
// the transfer resumes from what `status` says is missing; `commit` has the device verify and
// install it and restart into it; then `status` is asked until the launcher kept the new bundle
// (it reported ready) or rolled it back, and why.
import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { ErrorCode, errorMessage, isOutpostError, OutpostError } from '../runtime/errors.js'
import { MAX_MANIFEST_BYTES } from '../runtime/launcher/launcher.js'
import { MAX_CHUNK_BYTES, MIN_CHUNK_BYTES } from '../runtime/ota/contract.js'
import { describeFiles, MANIFEST_FILE, SIGNATURE_FILE, type Manifest } from './manifest.js'
import { parseSignature } from './signing.js'
import { readBundleFile } from './verify.js'

export { MAX_CHUNK_BYTES, MIN_CHUNK_BYTES }

/** How to reach the device and how to send. */
export interface OtaOptions {
  /** The gateway's HTTP face, e.g. http://gateway:8080. */
  gateway: string
  /** The device's id. */
  device: string
  /** The gateway's bearer token (http.token), when it asks for one. */
  token?: string
  /** Bytes per chunk (default 64 KiB; MIN_CHUNK_BYTES to MAX_CHUNK_BYTES). */
  chunkBytes?: number
  /** Chunks in flight at once (default 4). */
  inFlight?: number
  /** Longest wait for the new bundle's outcome after the commit, ms (default 300 000). */
  waitMs?: number
  /** Between two `status` calls while waiting, ms (default 500). */
  pollMs?: number
  /** Resumptions after lost connections before giving up (default 20). */
  resumes?: number
  /** Pause before each chunk, ms: for testing interrupted transfers (OUTPOST_OTA_CHUNK_DELAY_MS). */
  chunkDelayMs?: number
  /** Send a bundle of another device than the one the device runs (a thermo made a display): refused without. */
  changeDevice?: boolean
}

/** What ota@1's begin and status say of a transfer. */
export interface TransferView {
  bundleId: string
  device: string
  version: string
  buildTime: string
  chunkBytes: number
  files: { name: string; size: number; chunks: number; present: number[] }[]
  missing: number
}

/** What ota@1's status answers. */
export interface OtaStatus {
  running: { slot: string | null; device?: string; version?: string; buildTime?: string }
  transfer: TransferView | null
  committed: { bundleId: string; device: string; version: string; buildTime: string; slot: 'a' | 'b'; switchedAt: string; outcome: 'pending' | 'success' | 'rolled-back'; reason?: string } | null
  last: { outcome: string; at: string; slot: string | null; version?: string; buildTime?: string; reason?: string } | null
}

/** Progress of the transfer. */
export interface TransferProgress {
  /** Chunks sent by this run, and chunks the device had before it. */
  sent: number
  alreadyThere: number
  total: number
  /** Bytes of the bundle on the device now, of `bytesTotal`. */
  bytes: number
  bytesTotal: number
  /** Set when the transfer was interrupted and resumes (why). */
  resuming?: string
}

/** How it ended. */
export interface OtaResult {
  outcome: 'success' | 'rolled-back'
  manifest: Manifest
  bundleId: string
  slot: 'a' | 'b'
  previous: 'a' | 'b' | null
  /** Chunks this run sent, and chunks the device already had (from an earlier, interrupted run). */
  sent: number
  alreadyThere: number
  bytesSent: number
  /** Seconds the transfer of chunks took (for throughput). */
  transferSeconds: number
  /** Why it was rolled back (the launcher's reason). */
  reason?: string
  /** What the device runs now. */
  running: OtaStatus['running']
}

/** A gateway that cannot be reached at all (no HTTP answer): a plain error, its message says where. */
class Unreachable extends Error {
  override name = 'Unreachable'
}

/** Errors after which a transfer under way resumes: the gateway or the device went away for a while. */
const TRANSIENT = new Set<string>([ErrorCode.DEVICE_OFFLINE, ErrorCode.TIMEOUT, ErrorCode.BRIDGE_UNAVAILABLE, ErrorCode.BRIDGE_CLOSED, ErrorCode.SERVICE_UNREACHABLE, ErrorCode.NOT_FOUND])
const transient = (err: unknown): boolean => err instanceof Unreachable || (isOutpostError(err) && TRANSIENT.has(err.code))
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

/** A bundle read and checked here: its manifest, signature and files, as sent. */
export interface LocalBundle {
  dir: string
  manifest: Manifest
  manifestText: string
  signatureText: string
  keyId: string
  /** sha256 of manifest and signature: the transfer's name on the device (the same bundle resumes). */
  bundleId: string
  files: { name: string; size: number; sha256: string; bytes: Buffer }[]
  bytes: number
}

/**
 * Reads a bundle directory and checks what can be checked without the device's keys: signed (a
 * signature file), every file there with the manifest's size and sha256, and no other.
 * @throws NOT_FOUND (no manifest.json), UNKNOWN_KEY (unsigned), BAD_SIGNATURE (not a signature file), HASH_MISMATCH
 */
export async function readLocalBundle(dir: string): Promise<LocalBundle> {
  // Looked at before it is read: a FIFO or a device there is refused, not waited on.
  const read = (name: string): Buffer | undefined => readBundleFile(path.join(dir, name), MAX_MANIFEST_BYTES)
  const manifestBytes = read(MANIFEST_FILE)
  if (manifestBytes === undefined) throw new OutpostError(ErrorCode.NOT_FOUND, `${dir} has no ${MANIFEST_FILE}: not a bundle directory`)
  const sigBytes = read(SIGNATURE_FILE)
  if (sigBytes === undefined) throw new OutpostError(ErrorCode.UNKNOWN_KEY, `the bundle in ${dir} is not signed (no ${SIGNATURE_FILE}; built with --unsigned): devices refuse it`)
  const sig = parseSignature(sigBytes)
  let manifest: Manifest
  try {
    manifest = JSON.parse(manifestBytes.toString('utf8')) as Manifest
    if (!Array.isArray(manifest.files)) throw new Error('no files')
  } catch {
    throw new OutpostError(ErrorCode.HASH_MISMATCH, `${MANIFEST_FILE} in ${dir} is not a bundle manifest`)
  }
  const actual = await describeFiles(dir)
  const listed = new Map(manifest.files.map((f) => [f.path, f]))
  for (const f of actual) {
    const l = listed.get(f.path)
    if (l === undefined) throw new OutpostError(ErrorCode.HASH_MISMATCH, `${f.path} in ${dir} is not in the manifest`)
    if (l.size !== f.size || l.sha256 !== f.sha256) throw new OutpostError(ErrorCode.HASH_MISMATCH, `${f.path} in ${dir} is not the file the manifest lists (sha256 ${f.sha256.slice(0, 12)}…; expected ${l.sha256.slice(0, 12)}…)`)
    listed.delete(f.path)
  }
  const absent = [...listed.keys()][0]
  if (absent !== undefined) throw new OutpostError(ErrorCode.HASH_MISMATCH, `${absent} is missing from ${dir}`)
  const files = await Promise.all(manifest.files.map(async (f) => ({ name: f.path, size: f.size, sha256: f.sha256, bytes: await readFile(path.join(dir, f.path)) })))
  return {
    dir, manifest, manifestText: manifestBytes.toString('utf8'), signatureText: sigBytes.toString('utf8'), keyId: sig.keyId,
    bundleId: sha256(Buffer.concat([manifestBytes, sigBytes])).slice(0, 24),
    files, bytes: files.reduce((n, f) => n + f.size, 0),
  }
}

/** One call of a device command through the gateway's HTTP API. */
export type OtaCall = <T>(command: 'begin' | 'chunk' | 'status' | 'commit', payload: unknown, timeoutMs?: number) => Promise<T>

/**
 * Calls ota@1 commands of `opts.device` at `opts.gateway`.
 * @throws the gateway's typed error (DEVICE_OFFLINE, NOT_AUTHENTICATED, …) as an OutpostError; a plain error when the gateway cannot be reached
 */
export function otaCaller(opts: Pick<OtaOptions, 'gateway' | 'device' | 'token'>): OtaCall {
  const base = opts.gateway.replace(/\/+$/, '')
  return async <T>(command: string, payload: unknown, timeoutMs = 30_000): Promise<T> => {
    const url = `${base}/devices/${encodeURIComponent(opts.device)}/commands/ota/1/${command}?timeoutMs=${timeoutMs}`
    let res: Response
    try {
      res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(opts.token === undefined ? {} : { authorization: `Bearer ${opts.token}` }) },
        body: JSON.stringify(payload),
        signal: AbortSignal.timeout(timeoutMs + 10_000),
      })
    } catch (err) {
      if ((err as { name?: string }).name === 'TimeoutError') throw new Unreachable(`the gateway at ${base} did not answer ${command} within ${Math.round(timeoutMs / 1000) + 10} s`)
      const cause = (err as { cause?: { code?: string; message?: string } }).cause
      throw new Unreachable(`cannot reach the gateway at ${base} (${cause?.code ?? cause?.message ?? errorMessage(err)}); is it running, with its HTTP face on (http.enabled), and is that its HTTP port?`)
    }
    let body: { result?: T; error?: { code?: string; message?: string; details?: unknown } }
    try {
      body = (await res.json()) as typeof body
    } catch {
      throw new Unreachable(`${base} answered HTTP ${res.status} without JSON: is that the gateway's HTTP face?`)
    }
    if (res.ok && body !== null && 'result' in body) return body.result as T
    const e = body?.error
    if (e === undefined || typeof e.code !== 'string') throw new Unreachable(`${base} answered HTTP ${res.status} without a result or an error: is that the gateway's HTTP face?`)
    let message = e.message ?? `HTTP ${res.status}`
    if (e.code === ErrorCode.NOT_AUTHENTICATED) message += opts.token === undefined ? '; give the gateway\'s token with --token or OUTPOST_HTTP_TOKEN' : '; the token given (--token or OUTPOST_HTTP_TOKEN) is not the gateway\'s'
    if (e.code === ErrorCode.NO_HANDLER) message += `; over-the-air flashing needs the device started by its launcher (node launcher.mjs, after outpost flash --to) from a bundle that serves ota@1`
    throw new OutpostError(e.code as ErrorCode, message, { details: e.details })
  }
}

/** The phases of one over-the-air flash, each run once in order (bin/flash-cmd.ts shows each as a step). */
export interface OtaSession {
  /** Reads and checks the bundle here. */
  verify(): Promise<LocalBundle>
  /** Tells the device what comes; @returns the chunks it has already (of this same bundle) */
  begin(): Promise<TransferView>
  /** Sends what the device lacks, resuming after interruptions. */
  transfer(onProgress?: (p: TransferProgress) => void): Promise<TransferProgress>
  /** Has the device verify, install and restart into the bundle. */
  commit(): Promise<{ slot: 'a' | 'b'; previous: 'a' | 'b' | null; restarting: boolean }>
  /** Waits for the launcher's outcome. @param onWait told what is being waited for */
  outcome(onWait?: (what: string) => void): Promise<OtaResult>
}

/** An over-the-air flash of the bundle in `dir` to `opts.device`, in phases. */
export function otaSession(dir: string, opts: OtaOptions): OtaSession {
  const call = otaCaller(opts)
  let chunkBytes = opts.chunkBytes ?? 64 * 1024
  if (!Number.isSafeInteger(chunkBytes) || chunkBytes < MIN_CHUNK_BYTES || chunkBytes > MAX_CHUNK_BYTES) {
    throw new OutpostError(ErrorCode.BAD_ARGUMENT, `a chunk of ${chunkBytes} bytes is not accepted; from ${MIN_CHUNK_BYTES} to ${MAX_CHUNK_BYTES} bytes`)
  }
  const inFlight = Math.max(1, opts.inFlight ?? 4)
  let bundle: LocalBundle | undefined
  let view: TransferView | undefined
  let committed: { slot: 'a' | 'b'; previous: 'a' | 'b' | null; restarting: boolean } | undefined
  const progress: TransferProgress = { sent: 0, alreadyThere: 0, total: 0, bytes: 0, bytesTotal: 0 }
  let transferSeconds = 0
  let bytesSent = 0

  const beginPayload = (b: LocalBundle) => ({
    bundleId: b.bundleId, manifest: b.manifestText, signature: b.signatureText, chunkBytes,
    files: b.files.map((f) => ({ name: f.name, size: f.size, sha256: f.sha256 })),
  })
  const chunkSize = (f: { size: number }, i: number): number => Math.min(chunkBytes, f.size - i * chunkBytes)
  const bytesPresent = (v: TransferView): number => v.files.reduce((n, f) => n + f.present.reduce((m, i) => m + chunkSize(f, i), 0), 0)
  /** What the device has of this bundle now; begun again when it has lost the transfer. */
  const refresh = async (): Promise<TransferView> => {
    const s = await call<OtaStatus>('status', { bundleId: bundle!.bundleId })
    return s.transfer ?? (await call<TransferView>('begin', beginPayload(bundle!), 60_000))
  }

  return {
    async verify() {
      bundle = await readLocalBundle(dir)
      return bundle
    },

    async begin() {
      // A transfer of this bundle under way (an earlier run, interrupted) resumes in its chunk size.
      const s = await call<OtaStatus>('status', { bundleId: bundle!.bundleId })
      const runs = s.running.device
      if (runs !== undefined && runs !== bundle!.manifest.device && opts.changeDevice !== true) {
        throw new OutpostError(ErrorCode.BAD_ARGUMENT, `${opts.device} runs the ${runs} bundle and this one is ${bundle!.manifest.device}'s: give --change-device to make it a ${bundle!.manifest.device}; nothing was sent`)
      }
      const under = s.transfer
      if (under !== null && under.bundleId === bundle!.bundleId) chunkBytes = under.chunkBytes
      view = await call<TransferView>('begin', beginPayload(bundle!), 60_000)
      progress.total = view.files.reduce((n, f) => n + f.chunks, 0)
      progress.alreadyThere = progress.total - view.missing
      progress.bytesTotal = bundle!.bytes
      progress.bytes = bytesPresent(view)
      return view
    },

    async transfer(onProgress) {
      const b = bundle!
      const started = Date.now()
      let interruptions = 0
      for (;;) {
        const todo = view!.files.flatMap((f) => {
          const have = new Set(f.present)
          return Array.from({ length: f.chunks }, (_, i) => i).filter((i) => !have.has(i)).map((i) => ({ file: b.files.find((x) => x.name === f.name)!, index: i }))
        })
        progress.bytes = bytesPresent(view!)
        onProgress?.({ ...progress })
        let failure: unknown
        let next = 0
        const worker = async (): Promise<void> => {
          while (failure === undefined && next < todo.length) {
            const { file, index } = todo[next++]!
            if (opts.chunkDelayMs !== undefined && opts.chunkDelayMs > 0) await sleep(opts.chunkDelayMs)
            const data = file.bytes.subarray(index * chunkBytes, index * chunkBytes + chunkSize(file, index))
            try {
              await call('chunk', { bundleId: b.bundleId, file: file.name, index, data: data.toString('base64'), sha256: sha256(data) })
            } catch (err) {
              failure ??= err
              return
            }
            progress.sent++
            progress.bytes += data.byteLength
            bytesSent += data.byteLength
            onProgress?.({ ...progress })
          }
        }
        await Promise.all(Array.from({ length: Math.min(inFlight, todo.length) }, worker))
        if (failure === undefined) break
        if (!transient(failure) || ++interruptions > (opts.resumes ?? 20)) {
          if (transient(failure)) throw new OutpostError(isOutpostError(failure) ? failure.code : ErrorCode.BRIDGE_UNAVAILABLE, `${errorMessage(failure)}; the transfer was interrupted ${interruptions - 1} times and stopped: run the same command again to resume it`)
          throw failure
        }
        // Lost for a while: ask what arrived (chunks in flight may have), then send the rest.
        for (let wait = 500; ; wait = Math.min(wait * 2, 5_000)) {
          onProgress?.({ ...progress, resuming: errorMessage(failure) })
          await sleep(wait)
          try {
            view = await refresh()
            break
          } catch (err) {
            if (!transient(err) || ++interruptions > (opts.resumes ?? 20)) throw err
            failure = err
          }
        }
      }
      transferSeconds = (Date.now() - started) / 1000
      return { ...progress }
    },

    async commit() {
      for (let tries = 0; ; tries++) {
        try {
          committed = await call('commit', { bundleId: bundle!.bundleId }, 120_000)
          return committed!
        } catch (err) {
          if (!transient(err) || tries >= 5) throw err
          // The reply may be what was lost: the device may have committed and be restarting.
          await sleep(1_000)
          const s = await call<OtaStatus>('status', { bundleId: bundle!.bundleId }).catch(() => undefined)
          if (s?.committed?.bundleId === bundle!.bundleId) {
            committed = { slot: s.committed.slot, previous: null, restarting: true }
            return committed
          }
        }
      }
    },

    async outcome(onWait) {
      const b = bundle!
      const until = Date.now() + (opts.waitMs ?? 300_000)
      let seen = 'no answer yet'
      for (;;) {
        await sleep(opts.pollMs ?? 500)
        let s: OtaStatus | undefined
        try {
          s = await call<OtaStatus>('status', { bundleId: b.bundleId }, 5_000)
        } catch (err) {
          // While the device restarts it is offline, or not yet announcing its services.
          if (!transient(err) && !isOutpostError(err, ErrorCode.NO_HANDLER)) throw err
          seen = errorMessage(err)
        }
        const c = s?.committed
        if (s !== undefined && c?.bundleId !== b.bundleId) {
          throw new Error(`the device does not know of the commit of bundle ${b.bundleId} (it last committed ${c == null ? 'none' : c.bundleId}): was it flashed from elsewhere meanwhile?`)
        }
        if (s !== undefined && c != null && c.outcome !== 'pending') {
          return {
            outcome: c.outcome, manifest: b.manifest, bundleId: b.bundleId, slot: c.slot, previous: committed?.previous ?? null,
            sent: progress.sent, alreadyThere: progress.alreadyThere, bytesSent, transferSeconds, reason: c.reason, running: s.running,
          }
        }
        if (s !== undefined) seen = `the device runs slot ${s.running.slot ?? '?'}; slot ${c!.slot} has not reported ready yet`
        onWait?.(seen)
        if (Date.now() > until) {
          throw new Error(`no outcome from the device within ${Math.round((opts.waitMs ?? 300_000) / 1000)} s of the commit (last: ${seen}); its launcher keeps or rolls back the new bundle by itself: ask later with outpost flash status --device ${opts.device} --gateway ${opts.gateway}`)
        }
      }
    },
  }
}

/** All phases at once: checks, sends, commits and waits for the outcome. */
export async function flashOverTheAir(dir: string, opts: OtaOptions, onProgress?: (p: TransferProgress) => void): Promise<OtaResult> {
  const s = otaSession(dir, opts)
  await s.verify()
  await s.begin()
  await s.transfer(onProgress)
  await s.commit()
  return s.outcome()
}
