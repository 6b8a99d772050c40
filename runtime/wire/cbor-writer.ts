/**
 * A fast writer for the plain CBOR that envelopes, job payloads and outputs are made of:
 * numbers, strings, booleans, null, undefined, arrays and plain objects. It is the reader's
 * (`cbor-reader.ts`) counterpart, and for the same reason: for small values, cbor-x's fixed cost
 * per `encode` call (its buffer checks, and a new buffer every few kilobytes) is most of the
 * cost of writing a frame. Anything else (class instances, Maps, Dates, typed arrays, BigInts,
 * objects without a prototype, deep nesting) is not written here: `write` answers `UNWRITTEN`
 * and the caller encodes the value with cbor-x.
 *
 * A writer's state (the chunk frames are cut from, the position in it) belongs to the writer:
 * each codec creates its own (`createCborWriter`), so two codecs never share a buffer.
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


/**
 * Writes one frame in pieces, for a caller that knows the frame's layout: parts that never
 * change as bytes made once (`write` of each), the rest as items. `begin` answers false while
 * another frame is being written; after it, `end` or `abandon` must follow.
 */
export interface FramePieces {
  begin(): boolean
  bytes(b: Uint8Array): void
  /** A string, as `write` writes it. */
  text(s: string): void
  number(n: number): void
  null(): void
  /** Any value, as `write` writes it; false for one it leaves to cbor-x. */
  item(v: unknown): boolean
  end(): Buffer
  abandon(): void
}

/** A plain-CBOR writer with buffers of its own; one per codec. */
export interface CborWriter {
  /**
   * Encodes `value` as one CBOR item, or answers UNWRITTEN (nothing is kept of a partial
   * write). The bytes are a view into the writer's chunk, never overwritten by later frames.
   */
  write(value: unknown): Buffer | typeof UNWRITTEN
  /** Encodes the first `n` of `items` as one CBOR array, or answers UNWRITTEN. */
  writeArray(items: readonly unknown[], n: number): Buffer | typeof UNWRITTEN
  /** The same writer, one frame in pieces. */
  readonly pieces: FramePieces
}

/** Creates a plain-CBOR writer; its chunk and position are its own. */
export function createCborWriter(): CborWriter {
  return new PlainCborWriter()
}

// A class, not a closure per writer: its methods are one set of functions for all writers, so
// V8 optimises and inlines them once, whatever the number of writers.
class PlainCborWriter implements CborWriter, FramePieces {
  private chunk: Buffer = Buffer.allocUnsafeSlow(CHUNK)
  private view = new DataView(this.chunk.buffer, this.chunk.byteOffset, this.chunk.length)
  private start = 0
  private pos = 0
  // True while a frame is being written. A getter that encodes a value of its own with this
  // writer while its object is being written would interleave two frames: the inner write is
  // left to cbor-x.
  private writing = false
  // The pieces are this writer's own methods, so a frame in pieces costs no extra hop.
  readonly pieces: FramePieces = this

  /** Makes sure `n` more bytes fit, moving the frame written so far to a new chunk if not. */
  private room(n: number): void {
    if (this.pos + n <= this.chunk.length) return
    const used = this.pos - this.start
    const next = Buffer.allocUnsafeSlow(Math.max(CHUNK, 2 * (used + n)))
    this.chunk.copy(next, 0, this.start, this.pos)
    this.chunk = next
    this.view = new DataView(this.chunk.buffer, this.chunk.byteOffset, this.chunk.length)
    this.start = 0
    this.pos = used
  }

  /** The frame written since `start`; the next one starts after it. */
  private take(): Buffer {
    const frame = this.chunk.subarray(this.start, this.pos)
    this.start = this.pos
    return frame
  }

  write(value: unknown): Buffer | typeof UNWRITTEN {
    if (this.writing) return UNWRITTEN
    this.writing = true
    try {
      if (this.writeItem(value, 0)) return this.take()
    } catch {
      // A getter threw: cbor-x will meet the same error and report it.
    } finally {
      this.writing = false
    }
    this.pos = this.start
    return UNWRITTEN
  }

  writeArray(items: readonly unknown[], n: number): Buffer | typeof UNWRITTEN {
    if (this.writing) return UNWRITTEN
    this.writing = true
    try {
      this.head(0x80, n)
      let i = 0
      while (i < n && this.writeItem(items[i], 1)) i++
      if (i === n) return this.take()
    } catch {
      // as above
    } finally {
      this.writing = false
    }
    this.pos = this.start
    return UNWRITTEN
  }

  // ---- FramePieces ----

  begin(): boolean {
    if (this.writing) return false
    this.writing = true
    return true
  }

  bytes(b: Uint8Array): void {
    this.room(b.length)
    this.chunk.set(b, this.pos)
    this.pos += b.length
  }

  text(s: string): void {
    this.writeString(s)
  }

  number(n: number): void {
    this.writeNumber(n)
  }

  null(): void {
    this.room(1)
    this.chunk[this.pos++] = 0xf6
  }

  item(v: unknown): boolean {
    return this.writeItem(v, 1)
  }

  end(): Buffer {
    this.writing = false
    return this.take()
  }

  abandon(): void {
    this.writing = false
    this.pos = this.start
  }

  // ---- the writing ----

  private writeItem(value: unknown, depth: number): boolean {
    switch (typeof value) {
      case 'string':
        this.writeString(value)
        return true
      case 'number':
        this.writeNumber(value)
        return true
      case 'boolean':
        this.room(1)
        this.chunk[this.pos++] = value ? 0xf5 : 0xf4
        return true
      case 'undefined':
        this.room(1)
        this.chunk[this.pos++] = 0xf7
        return true
      case 'object': {
        if (value === null) {
          this.room(1)
          this.chunk[this.pos++] = 0xf6
          return true
        }
        if (depth >= MAX_DEPTH) return false
        const ctor = (value as { constructor?: unknown }).constructor
        if (ctor === Array) {
          const a = value as unknown[]
          const n = a.length
          this.head(0x80, n)
          for (let i = 0; i < n; i++) if (!this.writeItem(a[i], depth + 1)) return false
          return true
        }
        if (ctor !== Object) return false
        const o = value as Record<string, unknown>
        const keys = Object.keys(o)
        const n = keys.length
        this.head(0xa0, n)
        for (let i = 0; i < n; i++) {
          const key = keys[i]!
          this.writeString(key)
          if (!this.writeItem(o[key], depth + 1)) return false
        }
        return true
      }
      default:
        return false // bigint, symbol, function: cbor-x decides
    }
  }

  /** A major type with its argument, in the shortest form. */
  private head(major: number, n: number): void {
    this.room(5)
    if (n < 24) this.chunk[this.pos++] = major | n
    else if (n < 0x100) {
      this.chunk[this.pos++] = major | 24
      this.chunk[this.pos++] = n
    } else if (n < 0x10000) {
      this.chunk[this.pos++] = major | 25
      this.chunk[this.pos++] = n >> 8
      this.chunk[this.pos++] = n & 0xff
    } else {
      this.chunk[this.pos++] = major | 26
      this.view.setUint32(this.pos, n)
      this.pos += 4
    }
  }

  private writeNumber(v: number): void {
    if (v >>> 0 === v) this.head(0x00, v) // also -0, as cbor-x writes it
    else if (v >> 0 === v) this.head(0x20, -1 - v)
    else {
      this.room(9)
      this.chunk[this.pos++] = 0xfb
      this.view.setFloat64(this.pos, v)
      this.pos += 8
    }
  }

  private writeString(s: string): void {
    const n = s.length
    if (n <= SHORT_STRING) {
      // Written as ASCII behind a header for n bytes; the first other character starts over.
      this.room(n + 2)
      const at = this.pos
      this.pos = at + (n < 24 ? 1 : 2)
      let i = 0
      for (; i < n; i++) {
        const c = s.charCodeAt(i)
        if (c >= 0x80) break
        this.chunk[this.pos++] = c
      }
      if (i === n) {
        if (n < 24) this.chunk[at] = 0x60 | n
        else {
          this.chunk[at] = 0x78
          this.chunk[at + 1] = n
        }
        return
      }
      this.pos = at
    }
    const bytes = Buffer.byteLength(s, 'utf8')
    this.head(0x60, bytes)
    this.room(bytes)
    this.pos += this.chunk.write(s, this.pos, bytes, 'utf8')
  }

}

