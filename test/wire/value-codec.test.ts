import { Decoder, Encoder } from 'cbor-x'
import { describe, expect, it } from 'vitest'
import { ErrorCode, isOutpostError } from '../../runtime/errors.js'
import { createValueCodec } from '../../runtime/wire/value-codec.js'

// How the SQLite stores configured cbor-x before they shared the value codec: rows in existing
// databases were written by this encoder, and older runtimes read with this decoder.
const oldEncoder = new Encoder({ useRecords: false, mapsAsObjects: true })
const oldDecoder = new Decoder({ useRecords: false, mapsAsObjects: true })

const values: [string, unknown][] = [
  ['null', null],
  ['undefined', undefined],
  ['booleans', [true, false]],
  ['integers', [0, 1, 23, 24, 255, 256, 65535, 65536, 2 ** 32 - 1, -1, -24, -25, -(2 ** 31)]],
  ['large and fractional numbers', [2 ** 32, 2 ** 53 - 1, -(2 ** 40), 1.5, -0.1, Number.MAX_VALUE, Infinity, -Infinity]],
  ['strings', ['', 'a', 'temperature', 'x'.repeat(30), 'x'.repeat(300), 'héllo wörld', '😀 emoji', 'a\u0000b']],
  ['a job payload', { room: 'kitchen', celsius: 21.5, at: 1_700_000_000_000, tags: ['a', 'b'], nested: { ok: true, n: null } }],
  ['a map of 30 keys', Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`k${i}`, i]))],
  ['an array of 300 items', Array.from({ length: 300 }, (_, i) => i * 3)],
  ['a Buffer', Buffer.from([1, 2, 3])],
  ['a Uint8Array', new Uint8Array([4, 5, 6])],
  ['a Date', new Date(1_700_000_000_000)],
  ['a Map', new Map<string, number>([['a', 1]])],
  ['a Set', new Set([1, 2])],
  ['a BigInt', 2n ** 70n],
  ['deep nesting', JSON.parse('['.repeat(40) + ']'.repeat(40)) as unknown],
]

describe('value codec', () => {
  it.each(values)('reads rows written before it (%s) as the stores read them', (_, value) => {
    const codec = createValueCodec()
    const stored = oldEncoder.encode(value)
    expect(codec.decode(stored)).toStrictEqual(oldDecoder.decode(stored))
  })

  it.each(values)('writes bytes that older runtimes read back as the same value (%s)', (_, value) => {
    const codec = createValueCodec()
    const bytes = Uint8Array.prototype.slice.call(codec.encode(value))
    expect(oldDecoder.decode(bytes)).toStrictEqual(oldDecoder.decode(oldEncoder.encode(value)))
    expect(codec.decode(bytes)).toStrictEqual(oldDecoder.decode(bytes))
  })

  it('writes what cbor-x would, but for the shortest map size head', () => {
    const codec = createValueCodec()
    expect(Buffer.from(codec.encode([1, 'a', null, 1.5])).toString('hex')).toBe(oldEncoder.encode([1, 'a', null, 1.5]).toString('hex'))
    expect(Buffer.from(codec.encode({ a: 1 })).toString('hex')).toBe('a1616101')
    expect(oldEncoder.encode({ a: 1 }).toString('hex')).toBe('b90001616101')
  })

  it('keeps the bytes of earlier values intact while it writes later ones', () => {
    const codec = createValueCodec()
    const first = codec.encode({ id: 'first', n: 1 })
    const copy = Uint8Array.prototype.slice.call(first)
    for (let i = 0; i < 5000; i++) codec.encode({ id: `later-${i}`, filler: 'x'.repeat(i % 50) })
    expect(Buffer.from(first).equals(Buffer.from(copy))).toBe(true)
    expect(codec.decode(first)).toStrictEqual({ id: 'first', n: 1 })
  })

  it('throws OutpostErrors: STORE_FAILED for bytes that are not CBOR, INTERNAL for a value that cannot be written', () => {
    const codec = createValueCodec()
    for (const bytes of [[0x1c], [0x82, 0x01], [0xff], []]) {
      expect(() => codec.decode(new Uint8Array(bytes))).toThrow(expect.objectContaining({ name: 'OutpostError', code: 'STORE_FAILED' }))
    }
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    const secret = { get token(): string { throw new Error('secret-42') } }
    for (const value of [() => 1, Symbol('s'), cyclic, new Map([['f', () => 1]]), secret]) {
      let thrown: unknown
      try {
        codec.encode(value)
      } catch (err) {
        thrown = err
      }
      expect(isOutpostError(thrown, ErrorCode.INTERNAL)).toBe(true)
      // The cause stays for the device's log; the message (which may travel) does not carry it.
      expect((thrown as Error).message).not.toContain('secret-42')
    }
    // The codec writes on after a failure.
    expect(codec.decode(codec.encode({ after: 'failures' }))).toStrictEqual({ after: 'failures' })
  })
})
