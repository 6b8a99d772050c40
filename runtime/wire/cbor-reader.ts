/**
 * A fast reader for the plain CBOR that envelopes are made of: integers, floats, text
 * strings, arrays, maps with text keys, true/false/null/undefined. Anything else (tags, byte
 * strings, half floats, indefinite lengths, 8-byte integers, truncated or trailing bytes,
 * deep nesting, `__proto__` keys) is not read here: `read` answers `UNREAD` and the caller
 * decodes the frame with cbor-x, which has the last word on what a frame means. So this
 * reader never changes a decoded value, only how fast the common frame is read.
 *
 * Where the time goes in a small frame is making objects and strings. Two caches help:
 * - Short ASCII strings (map keys, device and service names) are kept by their bytes, so a
 *   repeated string is one comparison, not a new string.
 * - Maps are objects of a few recurring shapes. Once a sequence of keys has been seen twice,
 *   it gets a generated function that builds the object as one literal, so every object of that
 *   shape is made in one step with its final hidden class, not grown property by property.
 * Both caches are bounded, so frames with ever-new keys cannot grow memory. They belong to the
 * reader, as does the frame being read: each codec creates its own (`createCborReader`), so
 * what one codec has seen never shapes what another reads.
 */

import { ASCII_MAKER_MAX, asciiString, compileShape, sliceUtf8 } from './cbor-make.js'

/** Returned when the frame holds something this reader leaves to cbor-x. */
export const UNREAD: unique symbol = Symbol('unread')

const MAX_DEPTH = 32
const MAX_SHAPES = 512
const MAX_SHAPE_KEYS = 32
const STRING_CACHE_BITS = 12
const STRING_CACHE_MAX_LENGTH = 24

const CACHE_MASK = (1 << STRING_CACHE_BITS) - 1
const EMPTY = new Uint8Array(0)

/** A plain-CBOR reader with caches of its own; one per codec. Its methods never throw. */
export interface CborReader {
  /** Reads one CBOR item filling all of `bytes`, or answers UNREAD. */
  read(bytes: Uint8Array): unknown
  /**
   * Reads a frame that is one array of at most `into.length` items into `into` (an envelope's
   * fields, without making an array for them) and answers how many; -1 when the frame is
   * anything else or holds what this reader leaves to cbor-x. Slots past the count are not
   * touched.
   */
  readArray(bytes: Uint8Array, into: unknown[]): number
}

/**
 * A cached string with its bytes as big-endian 32-bit words: ceil(length / 4) of them, the
 * last one being the string's final four bytes (it may overlap the word before), so no read
 * reaches past the string. A string under 4 bytes keeps its bytes packed in `small`.
 */
interface CachedString { length: number; value: string; words: number[]; small: number }

/** One step in the tree of key sequences seen so far, per map size. */
interface Shape {
  key: string
  next: Shape | undefined
  sibling: Shape | undefined
  seen: number
  make: ((values: unknown[], base: number) => object) | undefined
}

/** Creates a plain-CBOR reader; the frame it reads and its caches are its own. */
export function createCborReader(): CborReader {
  return new PlainCborReader()
}

// A class, not a closure per reader: its methods are one set of functions for all readers, so
// V8 optimises and inlines them once, whatever the number of readers (closures made per reader
// made decoding a fifth slower as soon as a second reader existed).
class PlainCborReader implements CborReader {
  private src: Uint8Array = EMPTY
  private pos = 0
  private end = 0
  private unread = false

  // Multi-byte values (big-endian, as CBOR has them) are read through a DataView over the
  // frame's buffer; frames often share one buffer (a socket chunk, a Buffer pool), so the view
  // is kept while the buffer stays the same. `off` is the frame's offset in that buffer.
  private view: DataView = new DataView(new ArrayBuffer(8))
  private viewBuffer: ArrayBufferLike = this.view.buffer
  private off = 0

  // Made at the first string read, not with the reader: a device's start makes several readers
  // (its stores' among them) that read nothing before it is ready, and a 4,096-slot array each
  // was a tenth of what the start allocated before its first garbage collection.
  private stringCache: (CachedString | undefined)[] | undefined = undefined

  private readonly roots: (Shape | undefined)[] = new Array<Shape | undefined>(MAX_SHAPE_KEYS + 1)
  private shapeCount = 0
  // Values of maps being read, nested maps above their parents.
  private readonly values: unknown[] = []
  private readonly keys: string[] = []
  private valueTop = 0

  read(bytes: Uint8Array): unknown {
    this.open(bytes)
    let value: unknown
    try {
      value = this.readItem(0)
    } catch {
      this.unread = true
    }
    return this.close() ? value : UNREAD
  }

  readArray(bytes: Uint8Array, into: unknown[]): number {
    this.open(bytes)
    let n = -1
    try {
      if (this.end > 0 && this.src[0]! >> 5 === 4) {
        this.pos = 1
        const len = this.readLength(this.src[0]! & 0x1f)
        if (len >= 0 && len <= into.length && len <= this.end - this.pos) {
          for (let i = 0; i < len && !this.unread; i++) into[i] = this.readElement(0)
          n = len
        }
      }
    } catch {
      this.unread = true
    }
    return this.close() ? n : -1
  }

  private open(bytes: Uint8Array): void {
    this.src = bytes
    const buffer = bytes.buffer
    if (buffer !== this.viewBuffer) {
      this.view = new DataView(buffer)
      this.viewBuffer = buffer
    }
    this.off = bytes.byteOffset
    this.pos = 0
    this.end = bytes.length
    this.unread = false
  }

  /** Ends a read; true when it read everything and nothing was left to cbor-x. */
  private close(): boolean {
    const done = !this.unread && this.pos === this.end
    this.src = EMPTY
    this.valueTop = 0
    return done
  }

  private giveUp(): undefined {
    this.unread = true
    return undefined
  }

  private readLength(info: number): number {
    if (info < 24) return info
    if (info === 24) {
      if (this.pos >= this.end) return -1
      return this.src[this.pos++]!
    }
    if (info === 25) {
      if (this.pos + 2 > this.end) return -1
      const n = this.view.getUint16(this.off + this.pos)
      this.pos += 2
      return n
    }
    if (info === 26) {
      if (this.pos + 4 > this.end) return -1
      const n = this.view.getUint32(this.off + this.pos)
      this.pos += 4
      return n
    }
    // 8-byte integers become BigInts in cbor-x, and 8-byte lengths never fit a frame: cbor-x decides.
    return -1
  }

  /** An array element: nulls and small integers (an envelope's absent fields, version, kind) inline. */
  private readElement(depth: number): unknown {
    const b = this.pos < this.end ? this.src[this.pos]! : 0xff
    if (b === 0xf6) {
      this.pos++
      return null
    }
    if (b < 24) {
      this.pos++
      return b
    }
    return this.readItem(depth + 1)
  }

  private readItem(depth: number): unknown {
    if (this.pos >= this.end) return this.giveUp()
    const head = this.src[this.pos++]!
    const major = head >> 5
    const info = head & 0x1f
    switch (major) {
      case 0: {
        const n = this.readLength(info)
        return n < 0 ? this.giveUp() : n
      }
      case 1: {
        const n = this.readLength(info)
        return n < 0 ? this.giveUp() : -1 - n
      }
      case 3: {
        const n = this.readLength(info)
        if (n < 0 || n > this.end - this.pos) return this.giveUp()
        return this.readString(n)
      }
      case 4: {
        const n = this.readLength(info)
        if (n < 0 || n > this.end - this.pos || depth >= MAX_DEPTH) return this.giveUp()
        const array = new Array<unknown>(n)
        for (let i = 0; i < n; i++) {
          array[i] = this.readElement(depth)
          if (this.unread) return undefined
        }
        return array
      }
      case 5: {
        const n = this.readLength(info)
        if (n < 0 || n > (this.end - this.pos) / 2 || depth >= MAX_DEPTH) return this.giveUp()
        return this.readMap(n, depth)
      }
      case 7:
        switch (info) {
          case 20: return false
          case 21: return true
          case 22: return null
          case 23: return undefined
          case 26: {
            if (this.pos + 4 > this.end) return this.giveUp()
            const x = this.view.getFloat32(this.off + this.pos)
            this.pos += 4
            return x
          }
          case 27: {
            if (this.pos + 8 > this.end) return this.giveUp()
            const x = this.view.getFloat64(this.off + this.pos)
            this.pos += 8
            return x
          }
          default: return this.giveUp()
        }
      default:
        // Byte strings, tags and anything unusual: cbor-x decides.
        return this.giveUp()
    }
  }

  // ---- strings ----

  private packSmall(start: number, n: number): number {
    const s = this.src
    let x = s[start]!
    if (n > 1) x = (x << 8) | s[start + 1]!
    if (n > 2) x = (x << 8) | s[start + 2]!
    return x
  }

  private sameString(c: CachedString, start: number, n: number): boolean {
    if (n < 4) return c.small === this.packSmall(start, n)
    const at = this.off + start
    const words = c.words
    const last = words.length - 1
    for (let w = 0; w < last; w++) if (this.view.getInt32(at + 4 * w) !== words[w]) return false
    return this.view.getInt32(at + n - 4) === words[last]
  }

  private cacheEntry(start: number, n: number, value: string): CachedString {
    if (n < 4) return { length: n, value, words: [], small: this.packSmall(start, n) }
    const count = (n + 3) >> 2
    const words = new Array<number>(count)
    const at = this.off + start
    for (let w = 0; w < count - 1; w++) words[w] = this.view.getInt32(at + 4 * w)
    words[count - 1] = this.view.getInt32(at + n - 4)
    return { length: n, value, words, small: 0 }
  }

  private readString(n: number): string | undefined {
    if (n === 0) return ''
    if (n > STRING_CACHE_MAX_LENGTH) return this.readUtf8(n)
    const s = this.src
    const start = this.pos
    // Slot by length and three bytes; the whole string is compared on a hit.
    const slot = ((n << 7) ^ (s[start]! << 4) ^ (s[start + (n >> 1)]! << 1) ^ s[start + n - 1]!) & CACHE_MASK
    const cache = (this.stringCache ??= new Array<CachedString | undefined>(1 << STRING_CACHE_BITS).fill(undefined))
    const c = cache[slot]
    if (c !== undefined && c.length === n && this.sameString(c, start, n)) {
      this.pos = start + n
      return c.value
    }
    for (let i = start; i < start + n; i++) if (s[i]! >= 0x80) return this.readUtf8(n)
    const value = asciiString(this.src, start, n)
    cache[slot] = this.cacheEntry(start, n, value)
    this.pos = start + n
    return value
  }

  /** Strings past the cache, and strings that are not ASCII. */
  private readUtf8(n: number): string {
    const start = this.pos
    this.pos = start + n
    if (n <= ASCII_MAKER_MAX) {
      const s = this.src
      let or = 0
      for (let i = start; i < start + n; i++) or |= s[i]!
      if (or < 0x80) return asciiString(s, start, n)
    }
    return sliceUtf8(this.src, start, n)
  }

  // ---- maps ----

  private readMap(n: number, depth: number): object | undefined {
    const base = this.valueTop
    this.valueTop += n
    let shape: Shape | undefined
    let parent: Shape | undefined
    const tracked = n > 0 && n <= MAX_SHAPE_KEYS
    for (let i = 0; i < n; i++) {
      if (this.pos >= this.end) return this.giveUp()
      const head = this.src[this.pos++]!
      if (head >> 5 !== 3) return this.giveUp()
      const len = this.readLength(head & 0x1f)
      if (len < 0 || len > this.end - this.pos) return this.giveUp()
      const key = this.readString(len)
      if (key === undefined || key === '__proto__') return this.giveUp()
      this.keys[base + i] = key
      if (tracked) {
        // Walk the shape tree: the child of `parent` with this key.
        let s = i === 0 ? this.roots[n] : parent === undefined ? undefined : parent.next
        while (s !== undefined && s.key !== key) s = s.sibling
        if (s === undefined && (i === 0 || parent !== undefined) && this.shapeCount < MAX_SHAPES) {
          this.shapeCount++
          s = { key, next: undefined, sibling: undefined, seen: 0, make: undefined }
          if (i === 0) { s.sibling = this.roots[n]; this.roots[n] = s } else { s.sibling = parent!.next; parent!.next = s }
        }
        parent = s
        shape = s
      }
      const value = this.readItem(depth + 1)
      if (this.unread) return undefined
      this.values[base + i] = value
    }
    let object: object
    if (shape !== undefined && shape.make !== undefined) {
      object = shape.make(this.values, base)
    } else {
      if (shape !== undefined && ++shape.seen === 2) shape.make = compileShape(this.keys.slice(base, base + n))
      const o: Record<string, unknown> = {}
      for (let i = 0; i < n; i++) o[this.keys[base + i]!] = this.values[base + i]
      object = o
    }
    // Large maps let go of their values at once; a small map's few stay until overwritten.
    if (n > 16) {
      this.values.fill(undefined, base, base + n)
      this.keys.fill('', base, base + n)
    }
    this.valueTop = base
    return object
  }

}
