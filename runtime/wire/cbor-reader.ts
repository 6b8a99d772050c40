/**
 * A fast reader for the plain CBOR that envelopes are made of: integers, floats, text
 * strings, arrays, maps with text keys, true/false/null/undefined. Anything else (tags, byte
 * strings, half floats, indefinite lengths, 8-byte integers, truncated or trailing bytes,
 * deep nesting, `__proto__` keys) is not read here: `readPlainCbor` answers `UNREAD` and the
 * caller decodes the frame with cbor-x, which has the last word on what a frame means. So this
 * reader never changes a decoded value, only how fast the common frame is read.
 *
 * Where the time goes in a small frame is making objects and strings. Two caches help:
 * - Short ASCII strings (map keys, device and service names) are kept by their bytes, so a
 *   repeated string is one comparison, not a new string.
 * - Maps are objects of a few recurring shapes. Once a sequence of keys has been seen twice,
 *   it gets a generated function that builds the object as one literal, so every object of that
 *   shape is made in one step with its final hidden class, not grown property by property.
 * Both caches are bounded, so frames with ever-new keys cannot grow memory.
 */

/** Returned when the frame holds something this reader leaves to cbor-x. */
export const UNREAD: unique symbol = Symbol('unread')

const MAX_DEPTH = 32
const MAX_SHAPES = 512
const MAX_SHAPE_KEYS = 32
const STRING_CACHE_BITS = 12
const STRING_CACHE_MAX_LENGTH = 24

let src: Uint8Array = new Uint8Array(0)
let pos = 0
let end = 0
let unread = false

// Multi-byte values (big-endian, as CBOR has them) are read through a DataView over the
// frame's buffer; frames often share one buffer (a socket chunk, a Buffer pool), so the view
// is kept while the buffer stays the same. `off` is the frame's offset in that buffer.
let view: DataView = new DataView(new ArrayBuffer(8))
let viewBuffer: ArrayBufferLike = view.buffer
let off = 0

/** Reads one CBOR item filling all of `bytes`, or answers UNREAD. Never throws. */
export function readPlainCbor(bytes: Uint8Array): unknown {
  open(bytes)
  let value: unknown
  try {
    value = readItem(0)
  } catch {
    unread = true
  }
  return close() ? value : UNREAD
}

/**
 * Reads a frame that is one array of at most `into.length` items into `into` (an envelope's
 * fields, without making an array for them) and answers how many; -1 when the frame is
 * anything else or holds what this reader leaves to cbor-x. Slots past the count are not
 * touched. Never throws.
 */
export function readPlainCborArray(bytes: Uint8Array, into: unknown[]): number {
  open(bytes)
  let n = -1
  try {
    if (end > 0 && src[0]! >> 5 === 4) {
      pos = 1
      const len = readLength(src[0]! & 0x1f)
      if (len >= 0 && len <= into.length && len <= end - pos) {
        for (let i = 0; i < len && !unread; i++) into[i] = readElement(0)
        n = len
      }
    }
  } catch {
    unread = true
  }
  return close() ? n : -1
}

function open(bytes: Uint8Array): void {
  src = bytes
  const buffer = bytes.buffer
  if (buffer !== viewBuffer) {
    view = new DataView(buffer)
    viewBuffer = buffer
  }
  off = bytes.byteOffset
  pos = 0
  end = bytes.length
  unread = false
}

/** Ends a read; true when it read everything and nothing was left to cbor-x. */
function close(): boolean {
  const done = !unread && pos === end
  src = EMPTY
  valueTop = 0
  return done
}
const EMPTY = new Uint8Array(0)

function giveUp(): undefined {
  unread = true
  return undefined
}

function readLength(info: number): number {
  if (info < 24) return info
  if (info === 24) {
    if (pos >= end) return -1
    return src[pos++]!
  }
  if (info === 25) {
    if (pos + 2 > end) return -1
    const n = view.getUint16(off + pos)
    pos += 2
    return n
  }
  if (info === 26) {
    if (pos + 4 > end) return -1
    const n = view.getUint32(off + pos)
    pos += 4
    return n
  }
  // 8-byte integers become BigInts in cbor-x, and 8-byte lengths never fit a frame: cbor-x decides.
  return -1
}

/** An array element: nulls and small integers (an envelope's absent fields, version, kind) inline. */
function readElement(depth: number): unknown {
  const b = pos < end ? src[pos]! : 0xff
  if (b === 0xf6) {
    pos++
    return null
  }
  if (b < 24) {
    pos++
    return b
  }
  return readItem(depth + 1)
}

function readItem(depth: number): unknown {
  if (pos >= end) return giveUp()
  const head = src[pos++]!
  const major = head >> 5
  const info = head & 0x1f
  switch (major) {
    case 0: {
      const n = readLength(info)
      return n < 0 ? giveUp() : n
    }
    case 1: {
      const n = readLength(info)
      return n < 0 ? giveUp() : -1 - n
    }
    case 3: {
      const n = readLength(info)
      if (n < 0 || n > end - pos) return giveUp()
      return readString(n)
    }
    case 4: {
      const n = readLength(info)
      if (n < 0 || n > end - pos || depth >= MAX_DEPTH) return giveUp()
      const array = new Array<unknown>(n)
      for (let i = 0; i < n; i++) {
        array[i] = readElement(depth)
        if (unread) return undefined
      }
      return array
    }
    case 5: {
      const n = readLength(info)
      if (n < 0 || n > (end - pos) / 2 || depth >= MAX_DEPTH) return giveUp()
      return readMap(n, depth)
    }
    case 7:
      switch (info) {
        case 20: return false
        case 21: return true
        case 22: return null
        case 23: return undefined
        case 26: {
          if (pos + 4 > end) return giveUp()
          const x = view.getFloat32(off + pos)
          pos += 4
          return x
        }
        case 27: {
          if (pos + 8 > end) return giveUp()
          const x = view.getFloat64(off + pos)
          pos += 8
          return x
        }
        default: return giveUp()
      }
    default:
      // Byte strings, tags and anything unusual: cbor-x decides.
      return giveUp()
  }
}

// ---- strings ----

/**
 * A cached string with its bytes as big-endian 32-bit words: ceil(length / 4) of them, the
 * last one being the string's final four bytes (it may overlap the word before), so no read
 * reaches past the string. A string under 4 bytes keeps its bytes packed in `small`.
 */
interface CachedString { length: number; value: string; words: number[]; small: number }
const stringCache: (CachedString | undefined)[] = new Array(1 << STRING_CACHE_BITS).fill(undefined)
const CACHE_MASK = (1 << STRING_CACHE_BITS) - 1
const fromCharCode = String.fromCharCode

function packSmall(start: number, n: number): number {
  const s = src
  let x = s[start]!
  if (n > 1) x = (x << 8) | s[start + 1]!
  if (n > 2) x = (x << 8) | s[start + 2]!
  return x
}

function sameString(c: CachedString, start: number, n: number): boolean {
  if (n < 4) return c.small === packSmall(start, n)
  const at = off + start
  const words = c.words
  const last = words.length - 1
  for (let w = 0; w < last; w++) if (view.getInt32(at + 4 * w) !== words[w]) return false
  return view.getInt32(at + n - 4) === words[last]
}

function cacheEntry(start: number, n: number, value: string): CachedString {
  if (n < 4) return { length: n, value, words: [], small: packSmall(start, n) }
  const count = (n + 3) >> 2
  const words = new Array<number>(count)
  const at = off + start
  for (let w = 0; w < count - 1; w++) words[w] = view.getInt32(at + 4 * w)
  words[count - 1] = view.getInt32(at + n - 4)
  return { length: n, value, words, small: 0 }
}

function readString(n: number): string | undefined {
  if (n === 0) return ''
  if (n > STRING_CACHE_MAX_LENGTH) return readUtf8(n)
  const s = src
  const start = pos
  // Slot by length and three bytes; the whole string is compared on a hit.
  const slot = ((n << 7) ^ (s[start]! << 4) ^ (s[start + (n >> 1)]! << 1) ^ s[start + n - 1]!) & CACHE_MASK
  const c = stringCache[slot]
  if (c !== undefined && c.length === n && sameString(c, start, n)) {
    pos = start + n
    return c.value
  }
  for (let i = start; i < start + n; i++) if (s[i]! >= 0x80) return readUtf8(n)
  const value = asciiString(start, n)
  stringCache[slot] = cacheEntry(start, n, value)
  pos = start + n
  return value
}

/** The `n` bytes at `start`, known to be ASCII, as a string. */
function asciiString(start: number, n: number): string {
  const s = src
  switch (n) {
    case 1: return fromCharCode(s[start]!)
    case 2: return fromCharCode(s[start]!, s[start + 1]!)
    case 3: return fromCharCode(s[start]!, s[start + 1]!, s[start + 2]!)
    case 4: return fromCharCode(s[start]!, s[start + 1]!, s[start + 2]!, s[start + 3]!)
    default: {
      const make = asciiMaker(n)
      return make !== null ? make(s, start) : sliceUtf8(start, n)
    }
  }
}

// ASCII strings of up to 64 bytes: one generated fromCharCode call with a fixed number of
// arguments per length, which V8 makes without a copy through an argument array and without
// crossing into C++ (fromCharCode.apply and Node's UTF-8 slice both cost more).
const ASCII_MAKER_MAX = 64
const asciiMakers: (((s: Uint8Array, a: number) => string) | null | undefined)[] = new Array(ASCII_MAKER_MAX + 1)
function asciiMaker(n: number): ((s: Uint8Array, a: number) => string) | null {
  let make = asciiMakers[n]
  if (make === undefined) {
    const args = Array.from({ length: n }, (_, i) => `s[a + ${i}]`).join(', ')
    try {
      // eslint-disable-next-line @typescript-eslint/no-implied-eval
      make = new Function('s', 'a', `return String.fromCharCode(${args})`) as (s: Uint8Array, a: number) => string
    } catch {
      make = null // code generation disabled: Node's UTF-8 slice
    }
    asciiMakers[n] = make
  }
  return make
}

/** Strings past the cache, and strings that are not ASCII. */
function readUtf8(n: number): string {
  const start = pos
  pos = start + n
  if (n <= ASCII_MAKER_MAX) {
    const s = src
    let or = 0
    for (let i = start; i < start + n; i++) or |= s[i]!
    if (or < 0x80) return asciiString(start, n)
  }
  return sliceUtf8(start, n)
}

// Node's own UTF-8 slice where there is one (faster than TextDecoder on short strings); both
// turn invalid sequences into U+FFFD, as cbor-x does.
const utf8 = new TextDecoder()
const nodeUtf8Slice = (globalThis as { Buffer?: { prototype: { utf8Slice?: (start: number, end: number) => string } } }).Buffer?.prototype.utf8Slice
function sliceUtf8(start: number, n: number): string {
  return nodeUtf8Slice !== undefined ? nodeUtf8Slice.call(src, start, start + n) : utf8.decode(src.subarray(start, start + n))
}

// ---- maps ----

/** One step in the tree of key sequences seen so far, per map size. */
interface Shape {
  key: string
  next: Shape | undefined
  sibling: Shape | undefined
  seen: number
  make: ((values: unknown[], base: number) => object) | undefined
}
const roots: (Shape | undefined)[] = new Array(MAX_SHAPE_KEYS + 1)
let shapeCount = 0
// Values of maps being read, nested maps above their parents.
const values: unknown[] = []
const keys: string[] = []
let valueTop = 0

function readMap(n: number, depth: number): object | undefined {
  const base = valueTop
  valueTop += n
  let shape: Shape | undefined
  let parent: Shape | undefined
  const tracked = n > 0 && n <= MAX_SHAPE_KEYS
  for (let i = 0; i < n; i++) {
    if (pos >= end) return giveUp()
    const head = src[pos++]!
    if (head >> 5 !== 3) return giveUp()
    const len = readLength(head & 0x1f)
    if (len < 0 || len > end - pos) return giveUp()
    const key = readString(len)
    if (key === undefined || key === '__proto__') return giveUp()
    keys[base + i] = key
    if (tracked) {
      // Walk the shape tree: the child of `parent` with this key.
      let s = i === 0 ? roots[n] : parent === undefined ? undefined : parent.next
      while (s !== undefined && s.key !== key) s = s.sibling
      if (s === undefined && (i === 0 || parent !== undefined) && shapeCount < MAX_SHAPES) {
        shapeCount++
        s = { key, next: undefined, sibling: undefined, seen: 0, make: undefined }
        if (i === 0) { s.sibling = roots[n]; roots[n] = s } else { s.sibling = parent!.next; parent!.next = s }
      }
      parent = s
      shape = s
    }
    const value = readItem(depth + 1)
    if (unread) return undefined
    values[base + i] = value
  }
  let object: object
  if (shape !== undefined && shape.make !== undefined) {
    object = shape.make(values, base)
  } else {
    if (shape !== undefined && ++shape.seen === 2) shape.make = compileShape(keys.slice(base, base + n))
    const o: Record<string, unknown> = {}
    for (let i = 0; i < n; i++) o[keys[base + i]!] = values[base + i]
    object = o
  }
  // Large maps let go of their values at once; a small map's few stay until overwritten.
  if (n > 16) {
    values.fill(undefined, base, base + n)
    keys.fill('', base, base + n)
  }
  valueTop = base
  return object
}

function compileShape(shapeKeys: string[]): ((values: unknown[], base: number) => object) | undefined {
  // Keys are quoted with JSON.stringify, so no key can change the generated code; `__proto__`
  // never gets here (it would set the prototype inside a literal).
  const fields = shapeKeys.map((k, i) => `${JSON.stringify(k)}: v[b + ${i}]`).join(', ')
  try {
    // eslint-disable-next-line @typescript-eslint/no-implied-eval
    return new Function('v', 'b', `return { ${fields} }`) as (values: unknown[], base: number) => object
  } catch {
    // Code generation disabled (node --disallow-code-generation-from-strings): objects are
    // built key by key, as for shapes seen only once.
    return undefined
  }
}
