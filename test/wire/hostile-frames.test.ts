// Frames no Outpost device writes, as any client on the broker could send them: decoding yields
// plain, acyclic data or a typed error, and a field that becomes a topic level is a valid level.
import { Encoder } from 'cbor-x'
import { describe, expect, it } from 'vitest'
import { createEnvelopeCodec, createTopics, ErrorCode, type Envelope } from '../../runtime/index.js'
import { createPlainCborScan } from '../../runtime/wire/cbor-scan.js'

const enc = new Encoder({ useRecords: false })
const head = (major: number, n: number): Buffer => {
  if (n < 24) return Buffer.from([(major << 5) | n])
  if (n < 0x100) return Buffer.from([(major << 5) | 24, n])
  if (n < 0x10000) return Buffer.from([(major << 5) | 25, n >> 8, n & 0xff])
  const b = Buffer.alloc(5)
  b[0] = (major << 5) | 26
  b.writeUInt32BE(n, 1)
  return b
}
/** An event envelope whose payload is the given raw CBOR bytes. */
const eventWithPayload = (payload: Uint8Array): Buffer => {
  const fields = [1, 2, '01JD0000000000000000000009', 'cam-9', 'i1', 1_732_350_000_000, 'camera', '1', 'taken', null, null, null, null, null, null, null]
  return Buffer.concat([head(4, fields.length + 1), ...fields.map((f) => enc.encode(f)), payload])
}
/** A command envelope with the given routing fields. */
const command = (o: { src?: string; replyTo?: string | null; target?: string | null }): Buffer =>
  enc.encode([1, 0, '01JD0000000000000000000010', o.src ?? 'caller', 'i1', 1, 'counter', '1', 'add', null, o.replyTo === undefined ? 'caller' : o.replyTo, o.target === undefined ? 'dev-a' : o.target, null, null, null, null, { n: 1 }])

/** True when a value is what JSON could hold, plus byte strings and undefined: no cycles, no class instances. */
function plainData(value: unknown, seen = new Set<object>()): boolean {
  if (value === null || value === undefined) return true
  const t = typeof value
  if (t === 'string' || t === 'boolean') return true
  if (t === 'number') return true
  if (t !== 'object') return false
  const o = value as object
  if (seen.has(o)) return false // shared or cyclic
  seen.add(o)
  if (o instanceof Uint8Array) return Object.getPrototypeOf(o) === Uint8Array.prototype || Buffer.isBuffer(o)
  if (Array.isArray(o)) return Object.getPrototypeOf(o) === Array.prototype && o.every((x) => plainData(x, seen))
  const proto: unknown = Object.getPrototypeOf(o)
  if (proto !== Object.prototype && proto !== null) return false
  return Object.values(o).every((x) => plainData(x, seen))
}

describe('decoding hostile frames', () => {
  const codec = createEnvelopeCodec()

  it('refuses the 8-byte value-sharing payload that made cbor-x build a cycle', () => {
    // tag 28 (shareable) around a one-element array holding tag 29 (sharedref) 0: an array containing itself.
    const cyclic = Buffer.from([0xd8, 0x1c, 0x81, 0xd8, 0x1d, 0x00])
    const r = codec.decode(eventWithPayload(cyclic))
    expect(r).toMatchObject({ ok: false, error: { code: ErrorCode.INVALID_ENVELOPE } })
    // A shared (not cyclic) value, and a map that refers to itself.
    const shared = Buffer.from([0x82, 0xd8, 0x1c, 0xa1, 0x61, 0x61, 0x01, 0xd8, 0x1d, 0x00])
    const selfMap = Buffer.from([0xd8, 0x1c, 0xa1, 0x64, 0x73, 0x65, 0x6c, 0x66, 0xd8, 0x1d, 0x00])
    for (const p of [shared, selfMap]) expect(codec.decode(eventWithPayload(p))).toMatchObject({ ok: false, error: { code: ErrorCode.INVALID_ENVELOPE } })
  })

  it('refuses every tag and unassigned simple value cbor-x would turn into something other than data', () => {
    const structured = new Encoder({ useRecords: false, structuredClone: true })
    const withRecords = new Encoder({ useRecords: true })
    const cyclic: Record<string, unknown> = { a: 1 }
    cyclic.self = cyclic
    const payloads: Uint8Array[] = [
      enc.encode(new Date(0)), // tag 1
      Buffer.concat([Buffer.from([0xc0]), enc.encode('2026-01-01T00:00:00Z')]), // tag 0
      enc.encode(new Set([1, 2])), // tag 258
      enc.encode(new Map([[{ k: 1 }, 2]])), // a Map with an object key
      Buffer.concat([Buffer.from([0xd9, 0x01, 0x03]), enc.encode({ a: 1 })]), // tag 259: a Map
      enc.encode(new Float64Array([1.5])), // typed array tag
      enc.encode(2n ** 80n), // tag 2: a bignum
      Buffer.concat([Buffer.from([0xc2, 0x5a, 0x00, 0x01, 0x00, 0x00]), Buffer.alloc(65_536, 0xff)]), // a 64 KiB bignum (quadratic to build)
      enc.encode(/a+$/), // tag 27: a RegExp
      structured.encode(cyclic), // tags 28/29
      withRecords.encode({ rec: 1, ord: 2 }), // record tags
      Buffer.from([0xd9, 0xd9, 0xf7, 0x01]), // tag 55799 (self-describe)
      Buffer.from([0xe0]), // simple value 0
      Buffer.from([0xf8, 0x20]), // simple value 32
    ]
    for (const p of payloads) {
      const r = codec.decode(eventWithPayload(p))
      expect(r.ok, Buffer.from(p).subarray(0, 8).toString('hex')).toBe(false)
      if (!r.ok) expect([ErrorCode.INVALID_ENVELOPE, ErrorCode.MALFORMED_FRAME]).toContain(r.error.code)
    }
  })

  it('still reads byte strings, half floats, 8-byte integers (as numbers) and indefinite lengths', () => {
    const payload = Buffer.concat([
      Buffer.from([0xbf]), // indefinite map
      enc.encode('bytes'), enc.encode(Buffer.from([1, 2, 3])),
      enc.encode('half'), Buffer.from([0xf9, 0x3c, 0x00]),
      enc.encode('big'), Buffer.from([0x1b, 0, 0, 0, 1, 0, 0, 0, 0]),
      enc.encode('list'), Buffer.from([0x9f, 0x01, 0x02, 0xff]),
      Buffer.from([0xff]),
    ])
    const r = codec.decode(eventWithPayload(payload))
    expect(r.ok).toBe(true)
    if (r.ok) {
      expect(r.envelope.payload).toMatchObject({ half: 1, big: 2 ** 32, list: [1, 2] })
      expect(Buffer.from((r.envelope.payload as { bytes: Uint8Array }).bytes)).toEqual(Buffer.from([1, 2, 3]))
      expect(plainData(r.envelope.payload)).toBe(true)
    }
  })

  it('turns nesting deeper than the limit into MALFORMED_FRAME, in arrays and maps alike', () => {
    const deepMaps = Buffer.concat([...Array.from({ length: 20_000 }, () => Buffer.from([0xa1, 0x61, 0x6b])), Buffer.from([0x01])])
    const deepIndefinite = Buffer.concat([Buffer.alloc(20_000, 0x9f), Buffer.alloc(20_000, 0xff)])
    for (const p of [Buffer.alloc(50_000, 0x81), deepMaps, deepIndefinite]) {
      expect(codec.decode(eventWithPayload(p))).toMatchObject({ ok: false, error: { code: ErrorCode.MALFORMED_FRAME } })
    }
    // 60 levels (below the limit) still decode.
    const fine = Buffer.concat([Buffer.alloc(60, 0x81), Buffer.from([0x01])])
    expect(codec.decode(eventWithPayload(fine)).ok).toBe(true)
  })

  it('yields only plain, acyclic data from thousands of mutated frames with tags spliced in', () => {
    let seed = 11
    const rnd = (n: number): number => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31
      return seed % n
    }
    const base = eventWithPayload(enc.encode({ list: [1, 'two', { three: 3 }], when: 1.5, tags: ['a', 'b'] }))
    const splices = [[0xd8, 0x1c], [0xd8, 0x1d, 0x00], [0xc1], [0xd9, 0x01, 0x02], [0xd9, 0x01, 0x03], [0xd8, 0x1b], [0xc2, 0x41, 0x01], [0xd8, 0x69], [0xd8, 0x33]]
    let decoded = 0
    for (let i = 0; i < 5_000; i++) {
      const bytes = Buffer.from(base)
      const at = 40 + rnd(bytes.length - 40)
      const splice = Buffer.from(splices[rnd(splices.length)]!)
      const frame = rnd(2) === 0 ? Buffer.concat([bytes.subarray(0, at), splice, bytes.subarray(at)]) : bytes
      for (let k = rnd(3); k > 0; k--) frame[40 + rnd(frame.length - 40)] = rnd(256)
      const r = codec.decode(frame)
      if (!r.ok) continue
      decoded++
      expect(plainData(r.envelope.payload)).toBe(true)
    }
    expect(decoded).toBeGreaterThan(100)
  })

  it('accepts exactly one well-formed item in the scan, whatever the bytes', () => {
    const scanPlainCbor = createPlainCborScan()
    expect(scanPlainCbor(enc.encode([1, { a: [2, 'x'] }, null, true, 1.5]))).toBeUndefined()
    expect(scanPlainCbor(Buffer.from([0x82, 0x01]))).toMatchObject({ kind: 'malformed' }) // truncated
    expect(scanPlainCbor(Buffer.from([0x01, 0x02]))).toMatchObject({ kind: 'malformed' }) // trailing bytes
    expect(scanPlainCbor(Buffer.from([0xff]))).toMatchObject({ kind: 'malformed' }) // break outside anything
    expect(scanPlainCbor(Buffer.from([0x7f, 0x61, 0x61, 0xff]))).toMatchObject({ kind: 'malformed' }) // chunked text
    expect(scanPlainCbor(Buffer.from([0x9b, 0, 0, 0, 1, 0, 0, 0, 0]))).toMatchObject({ kind: 'malformed' }) // 2^32 items
    expect(scanPlainCbor(Buffer.from([0x1c]))).toMatchObject({ kind: 'malformed' }) // reserved
  })
})

describe('fields that become topic levels', () => {
  const codec = createEnvelopeCodec()
  const bad = ['#', '+', 'a/b', '', 'x'.repeat(129), 'x'.repeat(70_000), 'nul\u0000', 'tab\t', 'del\u007f', 'c1\u0085', '\ud800', '\uffff']

  it('drops a command whose replyTo, src or target cannot be one topic level, with INVALID_TOPIC_LEVEL', () => {
    // (A lone surrogate cannot arrive in a frame: UTF-8 decoding turns it into U+FFFD.)
    for (const level of bad.filter((b) => b !== '\ud800')) {
      for (const field of ['replyTo', 'src', 'target'] as const) {
        const r = codec.decode(command({ [field]: level }))
        if (field === 'src' && level === '') {
          expect(r).toMatchObject({ ok: false, error: { code: ErrorCode.INVALID_ENVELOPE } }) // a missing sender
          continue
        }
        expect(r, `${field} = ${JSON.stringify(level.slice(0, 20))}`).toMatchObject({ ok: false, error: { code: ErrorCode.INVALID_TOPIC_LEVEL, details: { field } } })
      }
    }
    // 128 characters, Unicode and absent fields are fine.
    expect(codec.decode(command({ replyTo: 'x'.repeat(128), src: 'gewächshaus-7', target: null })).ok).toBe(true)
    expect(codec.decode(command({ replyTo: null })).ok).toBe(true)
  })

  it('never builds a topic from a level that is not valid, on the memo path either', () => {
    const t = createTopics()
    const base = { v: 1, id: 'm', inst: 'i', at: 1 } as const
    const reply = (replyTo: string): Envelope => ({ ...base, kind: 'reply', src: 'dev-b', corr: 'c', replyTo })
    expect(t.topicOf(reply('dev-a'))).toBe('ob/dev-b/rep/dev-a')
    for (const level of bad) expect(() => t.topicOf(reply(level))).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_TOPIC_LEVEL }))
    const cmd = (o: Partial<Envelope>): Envelope => ({ ...base, kind: 'command', src: 'dev-a', target: 'dev-b', service: 'thermo', version: '1', name: 'read', ...o })
    expect(() => t.topicOf(cmd({ target: '#' }))).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_TOPIC_LEVEL }))
    expect(() => t.topicOf(cmd({ name: 'a/b' }))).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_TOPIC_LEVEL }))
    expect(() => t.topicOf(cmd({ version: '+' }))).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_TOPIC_LEVEL }))
    expect(() => t.topicOf({ ...base, kind: 'event', src: 'dev-a', service: 's', version: '1', name: '#' })).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_TOPIC_LEVEL }))
    expect(() => t.topicOf({ ...base, kind: 'presence', src: 'a+b' })).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_TOPIC_LEVEL }))
    expect(t.topicOf(cmd({}))).toBe('ob/dev-a/cmd/dev-b/thermo/1/read')
  })
})
