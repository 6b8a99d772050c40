import { Decoder, Encoder } from 'cbor-x'
import { ErrorCode, OutpostError, type WireError } from '../errors.js'
import { createCborReader, UNREAD } from './cbor-reader.js'
import { createPlainCborScan } from './cbor-scan.js'
import { createCborWriter, UNWRITTEN } from './cbor-writer.js'
import { ENVELOPE_VERSION, type Envelope, type EnvelopeKind } from './envelope.js'
import { isTopicSegment, TOPIC_LEVEL_RULE } from '../topic-level.js'

/** Default largest frame a device accepts: 256 KiB. */
export const DEFAULT_MAX_FRAME_BYTES = 256 * 1024

// Kinds travel as small integers; the table order is part of envelope version 1.
const KINDS: readonly EnvelopeKind[] = ['command', 'reply', 'event', 'presence', 'contract']
const KIND_CODE: Record<EnvelopeKind, number> = { command: 0, reply: 1, event: 2, presence: 3, contract: 4 }

// Positions in the wire array (envelope v1). Required fields first, so trailing absent
// optional fields can be left off entirely.
const F = {
  v: 0, kind: 1, id: 2, src: 3, inst: 4, at: 5, service: 6, version: 7, name: 8, corr: 9,
  replyTo: 10, target: 11, deadline: 12, traceparent: 13, tenant: 14, principal: 15,
  payload: 16, error: 17,
} as const

/** Outcome of decoding untrusted bytes: never throws, always says what went wrong. */
export type DecodeResult = { ok: true; envelope: Envelope } | { ok: false; error: OutpostError }

/** Encodes and decodes envelopes; one per bridge, so its buffers and caches are reused (and its own). */
export interface EnvelopeCodec {
  /**
   * Encodes an envelope to CBOR.
   * @throws INVALID_ENVELOPE when a payload cannot be encoded, or holds what no receiver accepts (see README: plain data only);
   * FRAME_TOO_LARGE when the frame would be larger than `maxFrameBytes` (no receiver with that limit takes it)
   */
  encode(env: Envelope): Uint8Array
  /** Decodes untrusted bytes; never throws. */
  decode(bytes: Uint8Array): DecodeResult
  /**
   * An encoder for the events one sender emits under one name (a queue's result events, say):
   * the fields they share are written as bytes made once. Its frames are byte for byte those
   * of `encode`, which takes any envelope that differs from `fixed` or carries more fields.
   */
  eventEncoder(fixed: EventFields): (env: Envelope) => Uint8Array
  readonly maxFrameBytes: number
}

/** The fields that all events of one name from one sender share. */
export interface EventFields {
  src: string
  inst: string
  service: string
  version: string
  name: string
}

/** Creates a CBOR envelope codec (cbor-x) with a frame size limit. */
export function createEnvelopeCodec(opts: { maxFrameBytes?: number } = {}): EnvelopeCodec {
  const maxFrameBytes = opts.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES
  // Plain CBOR maps and arrays only (no cbor-x record extension), so any CBOR library can read a frame.
  const encoder = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false })
  // 8-byte integers as numbers (as JSON has them), not BigInts (an option cbor-x reads but does
  // not declare in its types); tags never reach it (cbor-scan.ts).
  const decoder = new Decoder({ useRecords: false, mapsAsObjects: true, int64AsNumber: true } as ConstructorParameters<typeof Decoder>[0])
  // Envelope fields as read from a frame; reused, so decoding makes no array per frame.
  const fields: unknown[] = new Array<unknown>(F.error + 1).fill(undefined)
  // The plain-CBOR reader and writer, the scan before cbor-x, and the cache of valid topic
  // levels: this codec's own, so what one codec has read or written never reaches another.
  const reader = createCborReader()
  const writer = createCborWriter()
  const scan = createPlainCborScan()
  const validLevel = createLevelCheck()

  /**
   * A frame no receiver takes is refused where it is made: sent, it would be dropped by every
   * receiver with the same limit, and closed on by a broker with a smaller one (the outbox would
   * send it again after each reconnect, with every event behind it waiting).
   */
  const sized = (frame: Uint8Array): Uint8Array => {
    if (frame.length <= maxFrameBytes) return frame
    throw new OutpostError(ErrorCode.FRAME_TOO_LARGE, `outgoing frame of ${frame.length} bytes exceeds the ${maxFrameBytes}-byte frame limit (the bridge's maxPayloadBytes); nothing was sent`, {
      details: { size: frame.length, limit: maxFrameBytes },
    })
  }

  const encode = (env: Envelope): Uint8Array => {
    const a: unknown[] = [env.v, KIND_CODE[env.kind], env.id, env.src, env.inst, env.at,
      env.service, env.version, env.name, env.corr, env.replyTo, env.target, env.deadline,
      env.traceparent, env.tenant, env.principal, env.payload, env.error]
    let n = a.length
    while (n > F.service && a[n - 1] === undefined) n--
    a.length = n
    for (let i = F.service; i < n; i++) if (a[i] === undefined) a[i] = null
    // The common envelope is written by the plain-CBOR writer; anything it leaves goes to cbor-x.
    const frame = writer.writeArray(a, n)
    if (frame !== UNWRITTEN) return sized(frame)
    let bytes: Uint8Array
    try {
      bytes = encoder.encode(a)
    } catch (cause) {
      throw new OutpostError(ErrorCode.INVALID_ENVELOPE, 'payload cannot be encoded as CBOR', { cause })
    }
    // What a receiver would refuse (a Date, Map, Set, BigInt, typed array: cbor-x writes tags;
    // nesting past MAX_CBOR_DEPTH) fails here, where the sender hears of it.
    const problem = scan(bytes)
    if (problem !== undefined) throw new OutpostError(ErrorCode.INVALID_ENVELOPE, `payload cannot travel: ${problem.message}`)
    return sized(bytes)
  }

  const decode = (bytes: Uint8Array): DecodeResult => {
    if (bytes.length > maxFrameBytes) {
      return fail(ErrorCode.FRAME_TOO_LARGE, `frame of ${bytes.length} bytes exceeds the ${maxFrameBytes}-byte limit`, { size: bytes.length, limit: maxFrameBytes })
    }
    // The common frame is read by the plain-CBOR reader straight into `fields`; anything it
    // leaves goes to cbor-x.
    const n = reader.readArray(bytes, fields)
    if (n >= 0) {
      const r = fromWireArray(fields, n, validLevel)
      // Slots past a frame's count must read as absent in the next one.
      for (let i = 0; i < n; i++) fields[i] = undefined
      return r
    }
    // The reader may have filled some slots before it gave up on the frame (trailing bytes, say):
    // none of them may reach the next frame.
    fields.fill(undefined)
    let raw = reader.read(bytes)
    if (raw === UNREAD) {
      // Only plain data reaches cbor-x: no tags (shared or cyclic values, constructors, BigInts,
      // records), no unassigned simple values, no nesting past MAX_CBOR_DEPTH.
      const problem = scan(bytes)
      if (problem !== undefined) {
        return fail(problem.kind === 'malformed' ? ErrorCode.MALFORMED_FRAME : ErrorCode.INVALID_ENVELOPE, problem.message)
      }
      try {
        raw = decoder.decode(bytes)
      } catch (cause) {
        return fail(ErrorCode.MALFORMED_FRAME, 'frame is not well-formed CBOR', undefined, cause)
      }
    }
    if (!Array.isArray(raw)) return fail(ErrorCode.INVALID_ENVELOPE, 'envelope must be a CBOR array')
    return fromWireArray(raw, raw.length, validLevel)
  }

  const eventEncoder = (fixed: EventFields): ((env: Envelope) => Uint8Array) => {
    // The wire array of an event with a payload: 17 fields, `encode`'s layout.
    const made = (...items: unknown[]): Buffer => Buffer.concat(items.map((i) => Uint8Array.prototype.slice.call(writer.write(i) as Buffer)))
    const head = Buffer.concat([Buffer.from([0x80 | (F.payload + 1)]), made(ENVELOPE_VERSION, KIND_CODE.event)])
    const sender = made(fixed.src, fixed.inst)
    const names = made(fixed.service, fixed.version, fixed.name)
    const absent3 = made(null, null, null) // replyTo, target, deadline
    const absent2 = made(null, null) // tenant, principal
    const w = writer.pieces
    return (env) => {
      if (
        env.kind !== 'event' || env.v !== ENVELOPE_VERSION || env.src !== fixed.src || env.inst !== fixed.inst ||
        env.service !== fixed.service || env.version !== fixed.version || env.name !== fixed.name || env.payload === undefined ||
        env.replyTo !== undefined || env.target !== undefined || env.deadline !== undefined || env.tenant !== undefined ||
        env.principal !== undefined || env.error !== undefined || typeof env.id !== 'string' || typeof env.at !== 'number' ||
        !(env.corr === undefined || typeof env.corr === 'string') || !(env.traceparent === undefined || typeof env.traceparent === 'string') ||
        !w.begin()
      ) {
        return encode(env)
      }
      let made: Buffer | undefined
      try {
        w.bytes(head)
        w.text(env.id)
        w.bytes(sender)
        w.number(env.at)
        w.bytes(names)
        if (env.corr === undefined) w.null()
        else w.text(env.corr)
        w.bytes(absent3)
        if (env.traceparent === undefined) w.null()
        else w.text(env.traceparent)
        w.bytes(absent2)
        if (w.item(env.payload)) made = w.end()
      } catch {
        // A getter in the payload threw: `encode` meets it again and reports it.
      }
      if (made !== undefined) return sized(made)
      w.abandon()
      return encode(env)
    }
  }

  return { encode, decode, eventEncoder, maxFrameBytes }
}

function fail(code: ErrorCode, message: string, details?: unknown, cause?: unknown): DecodeResult {
  return { ok: false, error: new OutpostError(code, message, { details, cause }) }
}

function invalid(field: string, expected: string): DecodeResult {
  return fail(ErrorCode.INVALID_ENVELOPE, `envelope field "${field}" must be ${expected}`, { field })
}

/** Whether `s` can be one topic level (isTopicSegment); see createLevelCheck. */
type LevelCheck = (s: string) => boolean

/**
 * A topic-level check that remembers the last few strings found valid. Frames repeat their
 * senders and targets, and the plain reader hands out the very same string object for a
 * repeated short string, so a repeat costs a comparison, not a walk over its characters (about
 * 2 ns a character). Only valid strings are kept: a stale entry can never let an invalid one
 * through.
 */
function createLevelCheck(): LevelCheck {
  const k: string[] = ['ob', 'ob', 'ob', 'ob']
  let nextKnown = 0
  return (s) => {
    if (s === k[0] || s === k[1] || s === k[2] || s === k[3]) return true
    if (!isTopicSegment(s)) return false
    k[nextKnown] = s
    nextKnown = (nextKnown + 1) & 3
    return true
  }
}

function badLevel(field: string): DecodeResult {
  return fail(ErrorCode.INVALID_TOPIC_LEVEL, `envelope field "${field}" cannot be a topic level (${TOPIC_LEVEL_RULE})`, { field })
}

/** Whether an optional envelope field is absent (undefined or null) or a string. */
const optionalString = (value: unknown): value is string | null | undefined =>
  value === undefined || value === null || typeof value === 'string'

/** Checks the `n` wire fields in `raw` and builds the envelope; slots from `n` on are undefined. */
function fromWireArray(raw: readonly unknown[], n: number, validLevel: LevelCheck): DecodeResult {
  const v = raw[F.v]
  if (v !== ENVELOPE_VERSION) {
    // What the sender wrote is shown only as far as a log line should carry it: a frame's version
    // may be a string of a megabyte.
    const shown = typeof v === 'number' ? String(v) : typeof v === 'string' ? JSON.stringify(v.length > 32 ? `${v.slice(0, 32)}…` : v) : v === null ? 'null' : `of type ${typeof v}`
    return fail(ErrorCode.UNSUPPORTED_VERSION, `envelope version ${shown} is not supported (this runtime speaks ${ENVELOPE_VERSION})`, { version: typeof v === 'number' ? v : null })
  }
  if (n < F.service || n > F.error + 1) return fail(ErrorCode.INVALID_ENVELOPE, 'envelope has the wrong number of fields')
  const code = raw[F.kind]
  const kind = typeof code === 'number' ? KINDS[code] : undefined
  if (kind === undefined) return invalid('kind', 'a known kind code')
  const id = raw[F.id]
  if (typeof id !== 'string' || id.length === 0 || id.length > 64) return invalid('id', 'a non-empty string')
  const src = raw[F.src]
  if (typeof src !== 'string' || src.length === 0) return invalid('src', 'a non-empty string')
  // Fields a reply or a call turns into topic levels are checked here, once, for every inbound frame.
  if (!validLevel(src)) return badLevel('src')
  const inst = raw[F.inst]
  if (typeof inst !== 'string') return invalid('inst', 'a string')
  const at = raw[F.at]
  if (typeof at !== 'number' || !Number.isFinite(at)) return invalid('at', 'a number')
  const service = raw[F.service], version = raw[F.version], name = raw[F.name], corr = raw[F.corr]
  const replyTo = raw[F.replyTo], target = raw[F.target], traceparent = raw[F.traceparent]
  const tenant = raw[F.tenant], principal = raw[F.principal]
  if (!optionalString(service)) return invalid('service', 'a string')
  if (!optionalString(version)) return invalid('version', 'a string')
  if (!optionalString(name)) return invalid('name', 'a string')
  if (!optionalString(corr)) return invalid('corr', 'a string')
  if (!optionalString(replyTo)) return invalid('replyTo', 'a string')
  if (!optionalString(target)) return invalid('target', 'a string')
  if (!optionalString(traceparent)) return invalid('traceparent', 'a string')
  if (!optionalString(tenant)) return invalid('tenant', 'a string')
  if (!optionalString(principal)) return invalid('principal', 'a string')
  if (typeof replyTo === 'string' && replyTo !== src && !validLevel(replyTo)) return badLevel('replyTo')
  if (typeof target === 'string' && !validLevel(target)) return badLevel('target')
  // One object literal with every field: one hidden class for all envelopes, no field-by-field growth.
  const env: Envelope = {
    v, kind, id, src, inst, at,
    service: service ?? undefined,
    version: version ?? undefined,
    name: name ?? undefined,
    corr: corr ?? undefined,
    replyTo: replyTo ?? undefined,
    target: target ?? undefined,
    deadline: undefined,
    traceparent: traceparent ?? undefined,
    tenant: tenant ?? undefined,
    principal: principal ?? undefined,
    payload: n > F.payload && raw[F.payload] !== null ? raw[F.payload] : undefined,
    error: undefined,
  }
  const deadline = raw[F.deadline]
  if (deadline !== undefined && deadline !== null) {
    if (typeof deadline !== 'number' || !Number.isFinite(deadline)) return invalid('deadline', 'a number')
    env.deadline = deadline
  }
  const error = raw[F.error]
  if (error !== undefined && error !== null) {
    if (typeof error !== 'object' || typeof (error as WireError).code !== 'string' || typeof (error as WireError).message !== 'string') {
      return invalid('error', 'an object with string code and message')
    }
    const e = error as WireError
    env.error = e.details === undefined ? { code: e.code, message: e.message } : { code: e.code, message: e.message, details: e.details }
  }
  if ((kind === 'command' || kind === 'event') && (env.service === undefined || env.name === undefined)) {
    return fail(ErrorCode.INVALID_ENVELOPE, `a ${kind} envelope needs service and name`)
  }
  if (kind === 'reply' && env.corr === undefined) return invalid('corr', 'set on a reply')
  return { ok: true, envelope: env }
}
