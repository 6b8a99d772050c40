/**
 * A fast writer for the plain CBOR that envelopes, job payloads and outputs are made of:
 * numbers, strings, booleans, null, undefined, arrays and plain objects. It is the reader's
 * (`cbor-reader.ts`) counterpart, and for the same reason: for small values, cbor-x's fixed cost
 * per `encode` call (its buffer checks, and a new buffer every few kilobytes) is most of the
 * cost of writing a frame. Anything else (class instances, Maps, Dates, typed arrays, BigInts,
 * objects without a prototype, deep nesting) is not written here: `writePlainCbor` answers
 * `UNWRITTEN` and the caller encodes the value with cbor-x.
 *
 * What it writes decodes, with cbor-x or any CBOR decoder, to what cbor-x's own encoding of the
 * value decodes to. It differs from cbor-x's bytes in one way only: maps carry their size in the
 * shortest form (cbor-x always spends two bytes on it), so a frame is a little smaller.
 * Integers of up to 32 bits are written as integers and every other number as a 64-bit float,
 * as cbor-x does. Strings are UTF-8; a lone surrogate becomes U+FFFD, as with `Buffer.from`.
 */

/** Returned when a value holds what this writer leaves to cbor-x. */
export const UNWRITTEN: unique symbol = Symbol('unwritten')

const MAX_DEPTH = 32
// Frames are cut from chunks of this size, as cbor-x does. A frame is a view into its chunk,
// so whoever keeps a frame for long should keep a copy (the outbox's in-memory tail does).
const CHUNK = 8192
// Strings up to this length are written by a loop here; longer ones by Buffer's own UTF-8 writer.
const SHORT_STRING = 64

let chunk: Buffer = Buffer.allocUnsafeSlow(CHUNK)
let view = new DataView(chunk.buffer, chunk.byteOffset, chunk.length)
let start = 0
let pos = 0

/** Makes sure `n` more bytes fit, moving the frame written so far to a new chunk if not. */
function room(n: number): void {
  if (pos + n <= chunk.length) return
  const used = pos - start
  const next = Buffer.allocUnsafeSlow(Math.max(CHUNK, 2 * (used + n)))
  chunk.copy(next, 0, start, pos)
  chunk = next
  view = new DataView(chunk.buffer, chunk.byteOffset, chunk.length)
  start = 0
  pos = used
}

/** The frame written since `start`; the next one starts after it. */
function take(): Buffer {
  const frame = chunk.subarray(start, pos)
  start = pos
  return frame
}

// True while a frame is being written. A getter that encodes a value of its own while its
// object is being written would interleave two frames: the inner write is left to cbor-x.
let writing = false

/** Encodes `value` as one CBOR item, or answers UNWRITTEN (nothing is kept of a partial write). */
export function writePlainCbor(value: unknown): Buffer | typeof UNWRITTEN {
  if (writing) return UNWRITTEN
  writing = true
  try {
    if (writeItem(value, 0)) return take()
  } catch {
    // A getter threw: cbor-x will meet the same error and report it.
  } finally {
    writing = false
  }
  pos = start
  return UNWRITTEN
}

/** Encodes the first `n` of `items` as one CBOR array, or answers UNWRITTEN. */
export function writePlainCborArray(items: readonly unknown[], n: number): Buffer | typeof UNWRITTEN {
  if (writing) return UNWRITTEN
  writing = true
  try {
    head(0x80, n)
    let i = 0
    while (i < n && writeItem(items[i], 1)) i++
    if (i === n) return take()
  } catch {
    // as above
  } finally {
    writing = false
  }
  pos = start
  return UNWRITTEN
}

/**
 * Writes one frame in pieces, for a caller that knows the frame's layout: parts that never
 * change as bytes made once (`writePlainCbor` of each), the rest as items. `begin` answers
 * false while another frame is being written; after it, `end` or `abandon` must follow.
 */
export const framePieces = {
  begin(): boolean {
    if (writing) return false
    writing = true
    return true
  },
  bytes(b: Uint8Array): void {
    room(b.length)
    chunk.set(b, pos)
    pos += b.length
  },
  /** A string, as `writePlainCbor` writes it. */
  text: (s: string): void => writeString(s),
  number: (n: number): void => writeNumber(n),
  null(): void {
    room(1)
    chunk[pos++] = 0xf6
  },
  /** Any value, as `writePlainCbor` writes it; false for one it leaves to cbor-x. */
  item: (v: unknown): boolean => writeItem(v, 1),
  end(): Buffer {
    writing = false
    return take()
  },
  abandon(): void {
    writing = false
    pos = start
  },
}

function writeItem(value: unknown, depth: number): boolean {
  switch (typeof value) {
    case 'string':
      writeString(value)
      return true
    case 'number':
      writeNumber(value)
      return true
    case 'boolean':
      room(1)
      chunk[pos++] = value ? 0xf5 : 0xf4
      return true
    case 'undefined':
      room(1)
      chunk[pos++] = 0xf7
      return true
    case 'object': {
      if (value === null) {
        room(1)
        chunk[pos++] = 0xf6
        return true
      }
      if (depth >= MAX_DEPTH) return false
      const ctor = (value as { constructor?: unknown }).constructor
      if (ctor === Array) {
        const a = value as unknown[]
        const n = a.length
        head(0x80, n)
        for (let i = 0; i < n; i++) if (!writeItem(a[i], depth + 1)) return false
        return true
      }
      if (ctor !== Object) return false
      const o = value as Record<string, unknown>
      const keys = Object.keys(o)
      const n = keys.length
      head(0xa0, n)
      for (let i = 0; i < n; i++) {
        const key = keys[i]!
        writeString(key)
        if (!writeItem(o[key], depth + 1)) return false
      }
      return true
    }
    default:
      return false // bigint, symbol, function: cbor-x decides
  }
}

/** A major type with its argument, in the shortest form. */
function head(major: number, n: number): void {
  room(5)
  if (n < 24) chunk[pos++] = major | n
  else if (n < 0x100) {
    chunk[pos++] = major | 24
    chunk[pos++] = n
  } else if (n < 0x10000) {
    chunk[pos++] = major | 25
    chunk[pos++] = n >> 8
    chunk[pos++] = n & 0xff
  } else {
    chunk[pos++] = major | 26
    view.setUint32(pos, n)
    pos += 4
  }
}

function writeNumber(v: number): void {
  if (v >>> 0 === v) head(0x00, v) // also -0, as cbor-x writes it
  else if (v >> 0 === v) head(0x20, -1 - v)
  else {
    room(9)
    chunk[pos++] = 0xfb
    view.setFloat64(pos, v)
    pos += 8
  }
}

function writeString(s: string): void {
  const n = s.length
  if (n <= SHORT_STRING) {
    // Written as ASCII behind a header for n bytes; the first other character starts over.
    room(n + 2)
    const at = pos
    pos = at + (n < 24 ? 1 : 2)
    let i = 0
    for (; i < n; i++) {
      const c = s.charCodeAt(i)
      if (c >= 0x80) break
      chunk[pos++] = c
    }
    if (i === n) {
      if (n < 24) chunk[at] = 0x60 | n
      else {
        chunk[at] = 0x78
        chunk[at + 1] = n
      }
      return
    }
    pos = at
  }
  const bytes = Buffer.byteLength(s, 'utf8')
  head(0x60, bytes)
  room(bytes)
  pos += chunk.write(s, pos, bytes, 'utf8')
}
