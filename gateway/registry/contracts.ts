// The contract documents devices announce (retained on `<prefix>/<device>/contract`, kind
// `contract`, runtime/wire/README.md): the JSON Schemas of the commands and events each serves,
// which the command router checks cloud callers' payloads against. The latest document of each
// device the registry knows is kept in the gateway database (`registry_contracts`), a few
// recently used ones parsed in memory. A document is untrusted input: bounded in bytes and in
// what it may name, and anything else about it is the checker's to survive (command-router).
import type { Logger } from 'pino'
import type { Statement } from 'better-sqlite3'
import { errorMessage } from '../../runtime/errors.js'
import { createLogLimiter } from '../../runtime/log-limiter.js'
import type { DeviceDatabase } from '../../runtime/stores/sqlite/index.js'
import { createEnvelopeCodec } from '../../runtime/wire/codec.js'
import { MAX_CONTRACT_BYTES, type ContractCommand, type ContractPayload, type ContractService, type JsonSchema } from '../../runtime/wire/envelope.js'

/** The contract document one device announced, as the gateway keeps it. */
export interface DeviceContract {
  device: string
  /** The device process that announced it (a presence of another instance makes it stale). */
  instance: string
  receivedAt: number
  /** Size of the frame it came in. */
  bytes: number
  document: ContractPayload
}

/** Contract frames taken and ignored, by reason. */
export interface ContractStats {
  /** Documents kept (and cleared: an empty retained frame). */
  recorded: number
  /**
   * Frames ignored, by reason: `too-large` (over `maxBytes`), `malformed` (not an envelope),
   * `kind` (an envelope but no contract), `sender` (its src is not the topic's device), `payload`
   * (not a contract document), `unknown` (a device the registry does not know: no presence
   * within EARLY_WAIT_MS of the document, a later document of the device came while it waited,
   * or the registry is full).
   */
  ignored: Record<string, number>
}

export interface ContractStore {
  /** Takes a frame published on `<prefix>/<device>/contract` (an empty one clears it). Never throws. */
  observe(topic: string, device: string, payload: Uint8Array, at: number): void
  /** The latest document of a device, or undefined. */
  get(device: string): DeviceContract | undefined
  /** Drops a device's document (the registry forgot the device). */
  forget(device: string): void
  /**
   * The registry now knows `device` (its presence was recorded): a document that came before
   * the presence is recorded now. A device publishes its presence, then its document, but the
   * broker may hand them over in the other order.
   */
  known(device: string): void
  stats(): ContractStats
  /** Writes what is pending; takes nothing more. */
  close(): void
}

export interface ContractStoreOptions {
  /** Whether the registry knows a device (its presence was recorded). */
  known: (device: string) => boolean
  /** Largest frame kept (default MAX_CONTRACT_BYTES, 256 KiB). */
  maxBytes?: number
  /** Longest wait before a document is written, ms (default 50); a burst of them is one transaction. */
  flushMs?: number
  /** Documents kept parsed in memory, most recently used (default 256). */
  cacheSize?: number
  log?: Logger
}

/** How long a document of a device the registry does not know waits for the device's presence, ms. */
export const EARLY_WAIT_MS = 10_000
/** Most such documents waiting at once (the oldest is dropped, as `unknown`). */
const MAX_EARLY = 64

/** Bounds on what a presence or a document (untrusted) may name; the registry's entries have the same. */
export const MAX_SERVICES = 64
export const MAX_NAMES = 256
export const MAX_NAME_LENGTH = 128

const isName = (s: unknown): s is string => typeof s === 'string' && s.length > 0 && s.length <= MAX_NAME_LENGTH
const isRecord = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x) && !(x instanceof Uint8Array)
const isSchema = (x: unknown): x is JsonSchema => typeof x === 'boolean' || isRecord(x)

/** Up to MAX_NAMES entries of a name → value map whose values pass `take`; the rest is skipped. */
function named<T>(map: unknown, take: (x: unknown) => T | undefined): Record<string, T> {
  const out: Record<string, T> = {}
  if (!isRecord(map)) return out
  let n = 0
  for (const [name, x] of Object.entries(map)) {
    if (n >= MAX_NAMES) break
    const value = isName(name) && name !== '__proto__' ? take(x) : undefined
    if (value === undefined) continue
    out[name] = value
    n++
  }
  return out
}

const commandOf = (x: unknown): ContractCommand | undefined => {
  if (!isRecord(x) || !isSchema(x.payload)) return undefined
  return isSchema(x.result) ? { payload: x.payload, result: x.result } : { payload: x.payload }
}

/** The document a payload holds, within the bounds; undefined when it is none. */
export function contractOf(p: unknown): ContractPayload | undefined {
  if (!isRecord(p) || typeof p.v !== 'number' || !Array.isArray(p.services)) return undefined
  const services: ContractService[] = []
  const seen = new Set<string>()
  for (const s of p.services as unknown[]) {
    if (services.length >= MAX_SERVICES) break
    if (!isRecord(s) || !isName(s.name) || !isName(s.version) || seen.has(`${s.name}@${s.version}`)) continue
    seen.add(`${s.name}@${s.version}`)
    services.push({ name: s.name, version: s.version, commands: named(s.commands, commandOf), events: named(s.events, (x) => (isSchema(x) ? x : undefined)) })
  }
  return { v: p.v, dialect: typeof p.dialect === 'string' && p.dialect.length <= 64 ? p.dialect : 'draft-07', services }
}

interface Row {
  instance: string
  received_at: number
  bytes: number
  document: string
}

/** Creates the store over the gateway database's `registry_contracts` table (a step of GATEWAY_MIGRATIONS, gateway/store/gateway-database.ts). */
export function createContractStore(database: DeviceDatabase, opts: ContractStoreOptions): ContractStore {
  const maxBytes = opts.maxBytes ?? MAX_CONTRACT_BYTES
  const flushMs = opts.flushMs ?? 50
  const cacheSize = opts.cacheSize ?? 256
  const limiter = opts.log === undefined ? undefined : createLogLimiter(opts.log)
  const codec = createEnvelopeCodec({ maxFrameBytes: maxBytes })
  const { db } = database
  const upsert: Statement = db.prepare(`
    INSERT INTO registry_contracts (device, instance, received_at, bytes, document) VALUES (@device, @instance, @receivedAt, @bytes, @document)
    ON CONFLICT (device) DO UPDATE SET instance = excluded.instance, received_at = excluded.received_at, bytes = excluded.bytes, document = excluded.document`)
  const remove: Statement = db.prepare('DELETE FROM registry_contracts WHERE device = ?')
  const one: Statement = db.prepare('SELECT instance, received_at, bytes, document FROM registry_contracts WHERE device = ?')

  const stats: ContractStats = { recorded: 0, ignored: {} }
  // Written at the next flush: the document, or null to delete.
  const pending = new Map<string, DeviceContract | null>()
  // Parsed documents, least recently used first.
  const cache = new Map<string, DeviceContract>()
  let timer: NodeJS.Timeout | undefined
  let closed = false
  // Documents that came before their device's presence, oldest first; each waits EARLY_WAIT_MS.
  const early = new Map<string, { topic: string; payload: Uint8Array; at: number; until: number }>()
  let earlyTimer: NodeJS.Timeout | undefined

  const ignore = (reason: string, topic: string): void => {
    stats.ignored[reason] = (stats.ignored[reason] ?? 0) + 1
    limiter?.warn(`contract ${reason}`, { reason, topic: topic.slice(0, 200) }, 'contract document not recorded in the registry')
  }
  const flush = (): void => {
    if (timer !== undefined) clearTimeout(timer)
    timer = undefined
    if (pending.size === 0) return
    try {
      database.transaction(() => {
        for (const [device, c] of pending) {
          if (c === null) remove.run(device)
          else upsert.run({ device, instance: c.instance, receivedAt: c.receivedAt, bytes: c.bytes, document: JSON.stringify(c.document) })
        }
      })
      pending.clear()
    } catch (err) {
      limiter?.error('write', { err: errorMessage(err) }, 'contract documents not written to the gateway database; trying again')
      if (!closed) schedule()
    }
  }
  const schedule = (): void => {
    if (timer === undefined) timer = setTimeout(flush, flushMs).unref()
  }
  const put = (device: string, c: DeviceContract | null): void => {
    cache.delete(device)
    pending.set(device, c)
    schedule()
  }
  const remember = (c: DeviceContract): void => {
    cache.delete(c.device)
    cache.set(c.device, c)
    if (cache.size > cacheSize) cache.delete(cache.keys().next().value!)
  }

  /** Drops the early documents whose wait is over (all of them when closing), as `unknown`. */
  const expireEarly = (all: boolean): void => {
    const now = Date.now()
    for (const [device, e] of early) {
      if (!all && e.until > now) break
      early.delete(device)
      ignore('unknown', e.topic)
    }
    if (earlyTimer !== undefined) clearTimeout(earlyTimer)
    earlyTimer = undefined
    const next = early.values().next().value
    if (next !== undefined && !all) earlyTimer = setTimeout(() => expireEarly(false), Math.max(0, next.until - now) + 1).unref()
  }
  const setAside = (topic: string, device: string, payload: Uint8Array, at: number): void => {
    // A later document of the same device replaces the waiting one, which is counted: else a
    // flood on one id would be one frame in the counters.
    const replaced = early.get(device)
    if (replaced !== undefined) {
      early.delete(device)
      ignore('unknown', replaced.topic)
    }
    early.set(device, { topic, payload, at, until: Date.now() + EARLY_WAIT_MS })
    if (early.size > MAX_EARLY) {
      const [oldest, e] = early.entries().next().value!
      early.delete(oldest)
      ignore('unknown', e.topic)
    }
    if (earlyTimer === undefined) expireEarly(false)
  }

  const record = (topic: string, device: string, payload: Uint8Array, at: number): void => {
    if (payload.length > maxBytes) return ignore('too-large', topic)
    if (!opts.known(device)) return setAside(topic, device, payload, at)
    if (payload.length === 0) {
      stats.recorded++
      return put(device, null)
    }
    const decoded = codec.decode(payload)
    if (!decoded.ok) return ignore('malformed', topic)
    const env = decoded.envelope
    if (env.kind !== 'contract') return ignore('kind', topic)
    if (env.src !== device) return ignore('sender', topic)
    const document = contractOf(env.payload)
    if (document === undefined || env.inst.length > MAX_NAME_LENGTH) return ignore('payload', topic)
    stats.recorded++
    put(device, { device, instance: env.inst, receivedAt: at, bytes: payload.length, document })
  }

  return {
    observe(topic, device, payload, at) {
      if (closed) return
      try {
        record(topic, device, payload, at)
      } catch (err) {
        limiter?.warn('observe', { err: errorMessage(err) }, 'contract document not recorded in the registry')
      }
    },
    get(device) {
      const p = pending.get(device)
      if (p !== undefined) return p ?? undefined
      const hit = cache.get(device)
      if (hit !== undefined) {
        remember(hit)
        return hit
      }
      const row = one.get(device) as Row | undefined
      if (row === undefined) return undefined
      let document: ContractPayload | undefined
      try {
        document = contractOf(JSON.parse(row.document))
      } catch {
        document = undefined
      }
      if (document === undefined) return undefined
      const c: DeviceContract = { device, instance: row.instance, receivedAt: row.received_at, bytes: row.bytes, document }
      remember(c)
      return c
    },
    forget(device) {
      early.delete(device)
      put(device, null)
    },
    known(device) {
      const e = early.get(device)
      if (e === undefined || closed) return
      early.delete(device)
      try {
        record(e.topic, device, e.payload, e.at)
      } catch (err) {
        limiter?.warn('observe', { err: errorMessage(err) }, 'contract document not recorded in the registry')
      }
    },
    stats: () => ({ recorded: stats.recorded, ignored: { ...stats.ignored } }),
    close() {
      if (closed) return
      closed = true
      expireEarly(true)
      flush()
    },
  }
}
