import { Encoder } from 'cbor-x'
import { describe, expect, it } from 'vitest'
import { createEnvelopeCodec, createMessageIdFactory, messageIdTime, ErrorCode, type Envelope } from '../../runtime/index.js'
import { createNumberedIdFactory } from '../../runtime/wire/message-id.js'

const sample: Envelope = {
  v: 1, kind: 'command', id: '01JD0000000000000000000001', src: 'dev-a', inst: 'i1', at: 1_732_350_000_000,
  service: 'thermo', version: '1', name: 'read', replyTo: 'dev-a', target: 'dev-b', deadline: 1_732_350_005_000,
  traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', tenant: 't', principal: 'p',
  payload: { deviceId: 'x', reading: 21.5, ts: 1 },
}

describe('envelope codec', () => {
  const codec = createEnvelopeCodec()

  it('round-trips every envelope field', () => {
    const r = codec.decode(codec.encode(sample))
    expect(r).toEqual({ ok: true, envelope: sample })
  })

  it('round-trips a reply carrying an error', () => {
    const reply: Envelope = { v: 1, kind: 'reply', id: 'r1', src: 'b', inst: 'i', at: 5, corr: 'c1', replyTo: 'a', error: { code: 'TIMEOUT', message: 'late', details: { ms: 5 } } }
    expect(codec.decode(codec.encode(reply))).toEqual({ ok: true, envelope: reply })
  })

  it('writes the events of one name with an event encoder, byte for byte as encode does', () => {
    const fixed = { src: 'thermo-1', inst: 'k3j4h5g6', service: 'thermo', version: '1', name: 'sample.completed' }
    const encodeEvent = codec.eventEncoder(fixed)
    const event = (extra: Partial<Envelope>): Envelope => ({
      v: 1, kind: 'event', id: '01M85GQ6FSXV5PEJW20000A1S9', at: 1_732_350_000_123, ...fixed,
      payload: { jobId: '01M85GQ6FSXV5PEJW20000A1SA', queue: 'sample', attempt: 2, output: { celsius: 20.5, readings: [1, 2] } }, ...extra,
    })
    const getterThrows = { get boom(): number { throw new Error('boom') } }
    const cases: Envelope[] = [
      event({}),
      event({ corr: 'occ-17', traceparent: sample.traceparent }),
      event({ corr: 'ünïcödé', at: 5, id: 'x'.repeat(64) }),
      event({ payload: 'plain' }),
      event({ payload: null }),
      // Not the encoder's kind of envelope: handed to encode, same bytes.
      event({ name: 'other' }),
      event({ src: 'someone-else' }),
      event({ payload: undefined }),
      event({ tenant: 't', principal: 'p' }),
      event({ kind: 'command', replyTo: 'a', deadline: 9 }),
      event({ payload: { bare: Object.assign(Object.create(null) as object, { a: 1 }) } }), // left to cbor-x
    ]
    for (const env of cases) {
      expect(Buffer.from(encodeEvent(env))).toEqual(Buffer.from(codec.encode(env)))
      expect(codec.decode(encodeEvent(env))).toMatchObject({ ok: true })
    }
    expect(codec.decode(encodeEvent(cases[1]!))).toEqual({ ok: true, envelope: expect.objectContaining({ ...cases[1], replyTo: undefined }) })
    // What a receiver refuses (cbor-x writes a Date or a Map as a tag) fails at the sender.
    const tagged = event({ payload: { when: new Date(0), tags: new Map([['a', 1]]) } })
    expect(() => encodeEvent(tagged)).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_ENVELOPE }))
    expect(() => codec.encode(tagged)).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_ENVELOPE }))
    // A payload that cannot be encoded gets encode's typed error, and the next frame is whole.
    expect(() => encodeEvent(event({ payload: getterThrows }))).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_ENVELOPE }))
    expect(codec.decode(encodeEvent(cases[0]!))).toEqual({ ok: true, envelope: expect.objectContaining({ payload: cases[0]!.payload }) })
  })

  it('leaves absent trailing fields off the wire', () => {
    const small: Envelope = { v: 1, kind: 'presence', id: 'p', src: 'a', inst: 'i', at: 1 }
    expect(codec.encode(small).length).toBeLessThan(16)
  })

  it('turns garbage, truncated CBOR and deep nesting into MALFORMED_FRAME without throwing', () => {
    const bytes = codec.encode(sample)
    expect(codec.decode(Buffer.from([0xff, 0xfe, 0x00, 0x13]))).toMatchObject({ ok: false, error: { code: ErrorCode.MALFORMED_FRAME } })
    expect(codec.decode(bytes.subarray(0, bytes.length - 7))).toMatchObject({ ok: false, error: { code: ErrorCode.MALFORMED_FRAME } })
    expect(codec.decode(Buffer.alloc(100_000, 0x81))).toMatchObject({ ok: false, error: { code: ErrorCode.MALFORMED_FRAME } })
    expect(codec.decode(new Uint8Array())).toMatchObject({ ok: false })
  })

  it('never throws on thousands of mutated and truncated frames', () => {
    const good = Buffer.from(codec.encode(sample))
    let seed = 42
    const rnd = (n: number): number => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31 // deterministic, so a failure can be replayed
      return seed % n
    }
    const codes = new Set<string>()
    for (let i = 0; i < 5_000; i++) {
      const bytes = Buffer.from(good.subarray(0, 1 + rnd(good.length)))
      for (let k = rnd(4); k >= 0; k--) bytes[rnd(bytes.length)] = rnd(256)
      const r = codec.decode(bytes)
      if (!r.ok) codes.add(r.error.code)
    }
    expect([...codes].every((c) => ['MALFORMED_FRAME', 'INVALID_ENVELOPE', 'UNSUPPORTED_VERSION', 'INVALID_TOPIC_LEVEL'].includes(c))).toBe(true)
    expect(codes.has('MALFORMED_FRAME')).toBe(true)
  })

  it('refuses frames above the configured limit before decoding them', () => {
    const tiny = createEnvelopeCodec({ maxFrameBytes: 64 })
    const r = tiny.decode(codec.encode({ ...sample, payload: 'x'.repeat(100) }))
    expect(r).toMatchObject({ ok: false, error: { code: ErrorCode.FRAME_TOO_LARGE, details: { limit: 64 } } })
  })

  it('names an unknown envelope version UNSUPPORTED_VERSION', () => {
    const raw = new Encoder({ useRecords: false }).encode([2, 0, 'id', 'a', 'i', 1])
    expect(codec.decode(raw)).toMatchObject({ ok: false, error: { code: ErrorCode.UNSUPPORTED_VERSION, details: { version: 2 } } })
  })

  it("an unknown version a sender made huge (a string of 100,000 characters, an object) is named in a message of a line's length, not copied into it", () => {
    const enc = new Encoder({ useRecords: false })
    const huge = codec.decode(enc.encode(['x'.repeat(100_000), 0, 'id', 'a', 'i', 1]))
    expect(huge).toMatchObject({ ok: false, error: { code: ErrorCode.UNSUPPORTED_VERSION, details: { version: null } } })
    const message = (huge as { error: { message: string } }).error.message
    expect(message).toBe(`envelope version "${'x'.repeat(32)}…" is not supported (this runtime speaks 1)`)
    const shaped = codec.decode(enc.encode([{ a: 'y'.repeat(10_000) }, 0, 'id', 'a', 'i', 1]))
    expect((shaped as { error: { message: string } }).error.message).toBe('envelope version of type object is not supported (this runtime speaks 1)')
  })

  it('rejects well-formed CBOR of the wrong shape as INVALID_ENVELOPE', () => {
    const enc = new Encoder({ useRecords: false })
    const cases: unknown[] = [
      { v: 1 },
      [1, 9, 'id', 'a', 'i', 1],
      [1, 0, 42, 'a', 'i', 1],
      [1, 0, 'id', '', 'i', 1],
      [1, 0, 'id', 'a', 'i', 'yesterday'],
      [1, 0, 'id', 'a', 'i', 1, 7, null, 'cmd'],
      [1, 0, 'id', 'a', 'i', 1, null, null, null],
      [1, 1, 'id', 'a', 'i', 1],
      [1, 1, 'id', 'a', 'i', 1, null, null, null, 'c', null, null, null, null, null, null, null, { code: 5 }],
    ]
    for (const c of cases) expect(codec.decode(enc.encode(c))).toMatchObject({ ok: false, error: { code: ErrorCode.INVALID_ENVELOPE } })
  })
})

describe('message ids', () => {
  it('sort in creation order, within one millisecond too, and carry their time', () => {
    let t = 1_732_350_000_000
    const next = createMessageIdFactory(() => t)
    const ids: string[] = []
    for (let i = 0; i < 1000; i++) {
      if (i % 100 === 0) t++
      ids.push(next())
    }
    expect([...ids].sort()).toEqual(ids)
    expect(new Set(ids).size).toBe(ids.length)
    expect(messageIdTime(ids[0]!)).toBe(1_732_350_000_001)
    expect(ids[0]).toHaveLength(26)
  })

  it('carry a row number that reads back, and sort by time, then number', () => {
    const numbered = createNumberedIdFactory()
    const n = [0, 1, 31, 32, 1_000_000, 32 ** 8 - 1]
    const ids = n.map((k) => numbered.make(1_732_350_000_000, k))
    expect(ids.map((id) => numbered.numberOf(id))).toEqual(n)
    expect([...ids].sort()).toEqual(ids)
    expect(ids.map((id) => messageIdTime(id))).toEqual(n.map(() => 1_732_350_000_000))
    // The number reads back whichever factory made the id; what is no such id reads as -1.
    expect(createNumberedIdFactory().numberOf(ids[4]!)).toBe(1_000_000)
    expect(numbered.make(1_732_350_000_001, 0) > ids.at(-1)!).toBe(true)
    for (const bad of ['', 'short', `${ids[4]!}0`, `${ids[4]!.slice(0, 25)}u`, `${ids[4]!.slice(0, 25)}é`]) expect(numbered.numberOf(bad)).toBe(-1)
  })
})
