import { Decoder, Encoder } from 'cbor-x'
import { describe, expect, it } from 'vitest'
import { createCborReader, UNREAD } from '../../runtime/wire/cbor-reader.js'

const reader = createCborReader()
const readPlainCbor = (bytes: Uint8Array): unknown => reader.read(bytes)

// The envelope codec reads common frames with its own plain-CBOR reader and leaves the rest to
// cbor-x. Whatever the reader returns must be exactly what cbor-x returns for the same bytes.
const encoder = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false })
const decoder = new Decoder({ useRecords: false, mapsAsObjects: true })

function agree(bytes: Uint8Array): 'read' | 'deferred' {
  const ours = readPlainCbor(bytes)
  if (ours === UNREAD) return 'deferred'
  expect(ours).toStrictEqual(decoder.decode(bytes))
  return 'read'
}

function random(seed: number) {
  let s = seed
  return () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0
    return s / 0x100000000
  }
}

describe('plain CBOR reader', () => {
  it('reads what the envelope encoder writes, equal to cbor-x', () => {
    const values: unknown[] = [
      0, 1, 23, 24, 255, 256, 65_535, 65_536, 4_294_967_295, -1, -24, -25, -256, -65_537, -4_294_967_296,
      0.5, 23.4, -67.25, 1_732_350_000_123, Number.MAX_SAFE_INTEGER, 1e300, Number.NaN, Infinity, -Infinity,
      true, false, null, '', 'a', 'abc', 'abcd', 'greenhouse-07', 'x'.repeat(24), 'y'.repeat(25), 'z'.repeat(300),
      'é', 'naïve café', '日本語のテキスト', '🙂 emoji', [], [1, [2, [3, []]]], {}, { a: 1 },
      { deviceId: 'greenhouse-07', temperature: 23.4, humidity: 61.2, co2: 612, lux: 18_250, battery: 0.87, rssi: -67, ts: 1_732_350_000_000 },
      { nested: { deeper: { list: [1, 'two', { three: 3 }] } }, '1': 'numeric key', 'constructor': 'c', 'ключ': 'unicode key' },
      [1, 2, 'command', null, null, null, { k: 'v' }],
    ]
    for (const value of values) expect(agree(encoder.encode(value)), JSON.stringify(value)).toBe('read')
    // undefined inside an array is CBOR's undefined (0xf7).
    expect(agree(Buffer.from([0x82, 0xf7, 0xf6]))).toBe('read')
  })

  it('builds objects of a recurring shape with each frame its own values', () => {
    // The third and later objects of a shape come from a generated constructor.
    for (let i = 0; i < 50; i++) {
      const value = { deviceId: `dev-${i % 7}`, reading: i / 10, ts: 1_000 + i, tags: [`t${i}`], meta: { n: i } }
      const decoded = readPlainCbor(encoder.encode(value))
      expect(decoded).toStrictEqual(value)
    }
    // Same keys in another order, a key fewer, a key more: other shapes, still exact.
    expect(agree(encoder.encode({ ts: 1, reading: 2, deviceId: 'd', tags: [], meta: {} }))).toBe('read')
    expect(agree(encoder.encode({ deviceId: 'd', reading: 2, ts: 1, tags: [] }))).toBe('read')
    expect(agree(encoder.encode({ deviceId: 'd', reading: 2, ts: 1, tags: [], meta: {}, extra: true }))).toBe('read')
    // Repeated keys: the last one wins, as in cbor-x.
    expect(agree(Buffer.from([0xa2, 0x61, 0x61, 0x01, 0x61, 0x61, 0x02]))).toBe('read')
  })

  it('returns the right string when many strings share cache slots', () => {
    const next = random(7)
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
    const wide = ['é', '€', '😀']
    for (let i = 0; i < 20_000; i++) {
      // Lengths past the cache (up to 24 bytes) and past the generated ASCII makers (64), and
      // one string in ten with a character outside ASCII.
      const length = 1 + Math.floor(next() * 80)
      let s = ''
      for (let k = 0; k < length; k++) s += alphabet[Math.floor(next() * alphabet.length)]
      // Strings that differ in one middle byte from a cached one must not be taken for it.
      let twin = s.length > 4 ? s.slice(0, 2) + (s[2] === 'A' ? 'B' : 'A') + s.slice(3) : s
      if (next() < 0.1) {
        const at = Math.floor(next() * s.length)
        const c = wide[Math.floor(next() * wide.length)]!
        s = s.slice(0, at) + c + s.slice(at)
        twin = twin.slice(0, at) + c + twin.slice(at)
      }
      expect(readPlainCbor(encoder.encode([s, twin, { [s]: twin }]))).toStrictEqual([s, twin, { [s]: twin }])
    }
  })

  it('leaves tags, byte strings, half floats, 8-byte integers, __proto__ and bad frames to cbor-x', () => {
    const deferred = [
      encoder.encode(new Date(0)), // tag
      encoder.encode(new Uint8Array([1, 2, 3])), // byte string
      Buffer.from([0xf9, 0x3c, 0x00]), // float16 1.0
      Buffer.from([0x1b, 0, 0, 0, 0, 0, 0, 0, 1]), // 8-byte integer (cbor-x: a BigInt)
      Buffer.from([0xa1, 0x69, ...Buffer.from('__proto__'), 0x01]), // {"__proto__": 1}
      Buffer.from([0xa1, 0x01, 0x02]), // integer map key
      Buffer.from([0x9f, 0x01, 0xff]), // indefinite-length array
      Buffer.from([0x83, 0x01, 0x02]), // truncated
      Buffer.from([0x01, 0x02]), // trailing bytes
      Buffer.from([0xff]), // break outside anything
      new Uint8Array(0),
      Buffer.alloc(1_000, 0x81), // nesting deeper than the reader goes
    ]
    for (const bytes of deferred) expect(readPlainCbor(bytes), Buffer.from(bytes).subarray(0, 12).toString('hex')).toBe(UNREAD)
  })

  it('reads a frame inside a larger buffer and one that is a plain Uint8Array', () => {
    const frame = encoder.encode({ a: 'shared buffer', b: [1.5, -2] })
    const big = Buffer.alloc(frame.length + 37, 0xee)
    big.set(frame, 19)
    expect(readPlainCbor(big.subarray(19, 19 + frame.length))).toStrictEqual({ a: 'shared buffer', b: [1.5, -2] })
    expect(readPlainCbor(new Uint8Array(frame))).toStrictEqual({ a: 'shared buffer', b: [1.5, -2] })
  })

  it('never throws and never disagrees with cbor-x on mutated frames', () => {
    const next = random(99)
    const base = Buffer.from(encoder.encode([1, 2, 'id', 'src', 'inst', 1.5, 'svc', '1', 'name', null, { deviceId: 'd', t: 23.4, list: [1, 'x'] }]))
    let read = 0
    for (let i = 0; i < 5_000; i++) {
      const bytes = Buffer.from(base)
      const flips = 1 + Math.floor(next() * 3)
      for (let f = 0; f < flips; f++) bytes[Math.floor(next() * bytes.length)] = Math.floor(next() * 256)
      const frame = next() < 0.2 ? bytes.subarray(0, Math.floor(next() * bytes.length)) : bytes
      const ours = readPlainCbor(frame)
      if (ours === UNREAD) continue
      read++
      expect(ours).toStrictEqual(decoder.decode(frame))
    }
    expect(read).toBeGreaterThan(500)
  })

  it('keeps its caches to itself: another reader reads the same bytes to the same values', () => {
    const a = createCborReader()
    const b = createCborReader()
    const frame = encoder.encode({ deviceId: 'greenhouse-07', temperature: 23.4, tags: ['x', 'y'] })
    // Enough reads for a to cache the strings and compile the shape; b starts cold.
    for (let i = 0; i < 5; i++) expect(a.read(frame)).toStrictEqual({ deviceId: 'greenhouse-07', temperature: 23.4, tags: ['x', 'y'] })
    expect(b.read(frame)).toStrictEqual(a.read(frame))
    // A frame b gives up on leaves a's next read untouched.
    expect(b.read(new Uint8Array([0x82, 0x01]))).toBe(UNREAD)
    expect(a.read(frame)).toStrictEqual({ deviceId: 'greenhouse-07', temperature: 23.4, tags: ['x', 'y'] })
  })
})
