import { Decoder, Encoder } from 'cbor-x'
import { describe, expect, it } from 'vitest'
import { createCborReader } from '../../runtime/wire/cbor-reader.js'
import { createCborWriter, UNWRITTEN } from '../../runtime/wire/cbor-writer.js'

const reader = createCborReader()
const writer = createCborWriter()
const readPlainCbor = (bytes: Uint8Array): unknown => reader.read(bytes)
const writePlainCbor = (value: unknown): Buffer | typeof UNWRITTEN => writer.write(value)
const writePlainCborArray = (items: readonly unknown[], n: number): Buffer | typeof UNWRITTEN => writer.writeArray(items, n)

// Envelopes, job payloads and outputs are written by a plain-CBOR writer, cbor-x for the rest.
// Whatever the writer writes must decode (with cbor-x, and with Outpost's reader) to what
// cbor-x's own encoding of the same value decodes to.
const encoder = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false })
const decoder = new Decoder({ useRecords: false, mapsAsObjects: true })

function agree(value: unknown): Buffer {
  const ours = writePlainCbor(value)
  if (ours === UNWRITTEN) throw new Error(`not written: ${String(value)}`)
  const expected = decoder.decode(encoder.encode(value))
  expect(decoder.decode(ours)).toStrictEqual(expected)
  expect(readPlainCbor(ours)).toStrictEqual(expected)
  return ours
}

function random(seed: number) {
  let s = seed
  return () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0
    return s / 0x100000000
  }
}

const NUMBERS = [
  0, -0, 1, 23, 24, 255, 256, 65_535, 65_536, 4_294_967_295, 4_294_967_296, -1, -24, -25, -256, -257, -65_536,
  -65_537, -2_147_483_648, -2_147_483_649, 0.5, 23.4, -67.25, 1_732_350_000_123, Number.MAX_SAFE_INTEGER,
  -Number.MAX_SAFE_INTEGER, 1e300, 5e-324, Number.NaN, Infinity, -Infinity,
]

describe('plain CBOR writer', () => {
  it('writes numbers, strings, booleans, null, undefined, arrays and objects as cbor-x reads them', () => {
    const values: unknown[] = [
      ...NUMBERS, true, false, null, undefined, '', 'a', 'x'.repeat(23), 'x'.repeat(24), 'y'.repeat(64), 'z'.repeat(65),
      'z'.repeat(300), 'z'.repeat(70_000), 'é', 'températures €', '😀'.repeat(40), `${'a'.repeat(63)}é`, 'a\u0000b',
      [], [1, [2, [3, []]]], [undefined, null], new Array(3), {}, { a: 1 }, { a: undefined, b: null },
      { deviceId: 'greenhouse-07', temperature: 23.4, humidity: 61.2, co2: 612, ok: true, tags: ['a', 'b'], nested: { x: { y: -1 } } },
      Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`key${i}`, i])),
      Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`k${i}`, i])),
      Array.from({ length: 70_000 }, (_, i) => i), { 'odd "key"': 1, '': 2, 'ключ': 3, '123': 4 },
    ]
    for (const v of values) agree(v)
    // A lone surrogate cannot be UTF-8: it becomes U+FFFD, as with Buffer.from.
    expect(decoder.decode(writePlainCbor('a\ud800b') as Buffer)).toBe('a\ufffdb')
    // Sizes in the shortest form: {ok: true} is a1 62 6f 6b f5.
    expect(Array.from(writePlainCbor({ ok: true }) as Buffer)).toEqual([0xa1, 0x62, 0x6f, 0x6b, 0xf5])
  })

  it('agrees with cbor-x on random nested values', () => {
    const next = random(11)
    const alphabet = Array.from('abcXYZ019-_ é€😀') // by code point: no lone surrogates
    const str = (): string => {
      const n = Math.floor(next() * (next() < 0.1 ? 200 : 30))
      let s = ''
      for (let i = 0; i < n; i++) s += alphabet[Math.floor(next() * alphabet.length)]
      return s
    }
    const make = (depth: number): unknown => {
      const r = next()
      if (depth > 4 || r < 0.35) return NUMBERS[Math.floor(next() * NUMBERS.length)]! * (next() < 0.5 ? 1 : next())
      if (r < 0.6) return str()
      if (r < 0.65) return [true, false, null, undefined][Math.floor(next() * 4)]
      if (r < 0.8) return Array.from({ length: Math.floor(next() * 6) }, () => make(depth + 1))
      return Object.fromEntries(Array.from({ length: Math.floor(next() * 6) }, () => [str(), make(depth + 1)]))
    }
    for (let i = 0; i < 5_000; i++) agree(make(0))
  })

  it('leaves class instances, Maps, Dates, typed arrays, BigInts and deep nesting to cbor-x, and writes on after them', () => {
    class Reading {
      constructor(public value = 1) {}
    }
    let deep: unknown = 1
    for (let i = 0; i < 40; i++) deep = [deep]
    const left = [
      new Date(0), new Map([[1, 2]]), new Set([1]), new Uint8Array([1, 2]), Buffer.from('x'), 10n, Symbol('s'), () => 1,
      Object.create(null), new Reading(), { a: [1, { b: new Date(0) }] }, deep,
    ]
    for (const v of left) {
      expect(writePlainCbor(v)).toBe(UNWRITTEN)
      // Nothing of the partial write is left behind.
      agree({ after: 'a partial write', n: 1 })
    }
    expect(writePlainCborArray([1, 'two', new Date(0)], 3)).toBe(UNWRITTEN)
    expect(decoder.decode(writePlainCborArray([1, 'two', { three: 3 }, 'not written'], 3) as Buffer)).toStrictEqual([1, 'two', { three: 3 }])
  })

  it('leaves a value whose getter throws or writes CBOR itself to cbor-x, and writes on after it', () => {
    const throwing = { a: 1, get b(): number { throw new Error('no b') } }
    expect(writePlainCbor(throwing)).toBe(UNWRITTEN)
    agree({ after: 'a getter threw' })
    const inner: (Buffer | typeof UNWRITTEN)[] = []
    const nesting = { a: 1, get b(): string { inner.push(writePlainCbor({ inner: true })); return 'b' } }
    const outer = writePlainCbor(nesting)
    expect(inner).toEqual([UNWRITTEN])
    expect(decoder.decode(outer as Buffer)).toStrictEqual({ a: 1, b: 'b' })
  })

  it('shares nothing with another writer: a getter may write with one while its object is written by the other', () => {
    const other = createCborWriter()
    const inner: (Buffer | typeof UNWRITTEN)[] = []
    const nesting = { a: 1, get b(): string { inner.push(other.write({ inner: true })); return 'b' } }
    const outer = writer.write(nesting)
    expect(decoder.decode(outer as Buffer)).toStrictEqual({ a: 1, b: 'b' })
    expect(decoder.decode(inner[0] as Buffer)).toStrictEqual({ inner: true })
    // Frames from each stay intact while both go on writing.
    const mine = writer.write({ from: 'writer' }) as Buffer
    const theirs = other.write({ from: 'other' }) as Buffer
    for (let i = 0; i < 2000; i++) {
      writer.write({ i, pad: 'p'.repeat(i % 40) })
      other.write([i, 'q'.repeat(i % 40)])
    }
    expect(decoder.decode(mine)).toStrictEqual({ from: 'writer' })
    expect(decoder.decode(theirs)).toStrictEqual({ from: 'other' })
  })

  it('keeps every frame it handed out intact while it writes many more', () => {
    const frames: [Buffer, unknown][] = []
    for (let i = 0; i < 20_000; i++) {
      const v = i % 100 === 0 ? { big: 'b'.repeat(10_000 + i), i } : { i, id: `id-${i}`, reading: i / 7 }
      frames.push([writePlainCbor(v) as Buffer, v])
    }
    for (const [frame, v] of frames) expect(decoder.decode(frame)).toStrictEqual(v)
  })
})
