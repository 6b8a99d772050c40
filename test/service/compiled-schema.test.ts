import * as v from 'valibot'
import { describe, expect, it } from 'vitest'
import { isCompiled, safeParse } from '../../runtime/service/compiled-schema.js'

// The runtime validates payloads and results through compiled acceptors where a schema allows;
// whatever they accept must come out exactly as valibot would give it, and everything else is
// valibot's own answer.
function random(seed: number) {
  let s = seed
  return () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0
    return s / 0x100000000
  }
}

const schemas = {
  reading: v.object({ deviceId: v.string(), reading: v.number(), ts: v.number() }),
  result: v.object({ ok: v.literal(true), n: v.number() }),
  nested: v.object({
    id: v.string(),
    point: v.object({ x: v.number(), y: v.number(), label: v.nullable(v.string()) }),
    tags: v.array(v.string()),
    samples: v.array(v.object({ t: v.number(), on: v.boolean() })),
  }),
  optional: v.object({ a: v.string(), b: v.optional(v.number()), c: v.optional(v.object({ d: v.literal('x') })), e: v.boolean() }),
  odd: v.object({ 'a:b': v.string(), '1': v.number(), 'with "quotes"': v.optional(v.string()), constructor: v.boolean() }),
  list: v.array(v.number()),
  unit: v.object({ unit: v.picklist(['C', 'F']), level: v.optional(v.picklist([1, 2, 3])) }),
  scalar: v.string(),
}

const values = (next: () => number): unknown[] => [
  undefined, null, true, false, 0, -1, 2.5, Number.NaN, Infinity, '', 'x', 'abc', [], [1, 2], ['a', 'b'], {},
  { nested: true }, [{ t: 1, on: true }], { x: 1, y: 2, label: null }, { x: 1, y: 2, label: 'p' }, { d: 'x' }, { d: 'y' },
  Math.floor(next() * 1000), 'greenhouse-07', 'C', 'F', 'K', 1, 3, 4,
]

function randomInput(next: () => number, keys: string[], depth = 0): unknown {
  const pool = values(next)
  if (depth > 2 || next() < 0.3) return pool[Math.floor(next() * pool.length)]
  if (next() < 0.2) return Array.from({ length: Math.floor(next() * 4) }, () => randomInput(next, keys, depth + 1))
  const o: Record<string, unknown> = {}
  for (const key of keys) {
    const r = next()
    if (r < 0.15) continue // absent
    if (r < 0.2) o[key] = undefined // present, undefined
    else o[key] = randomInput(next, keys, depth + 1)
  }
  if (next() < 0.3) o.extra = 'unknown key'
  return o
}

function expectSame(schema: v.GenericSchema, input: unknown): boolean {
  const ours = safeParse(schema, input)
  const theirs = v.safeParse(schema, input)
  if (ours.success !== theirs.success) {
    // The one deliberate difference: an object schema takes only a plain object; valibot takes
    // arrays and class instances there too. Ours is never the one that accepts.
    expect(theirs.success).toBe(true)
    expect(ours.issues?.[0]).toMatchObject({ expected: 'Object' })
    return false
  }
  if (ours.success && theirs.success) {
    expect(ours.output).toStrictEqual(theirs.output)
    expect(JSON.stringify(ours.output)).toBe(JSON.stringify(theirs.output)) // same key order
    if (typeof input === 'object' && input !== null) expect(ours.output).not.toBe(input) // a new object, as valibot's
  } else {
    const summary = (issues: readonly v.BaseIssue<unknown>[]) => issues.map((i) => [i.kind, i.type, i.expected, i.received, i.message, i.path?.map((p) => p.key)])
    expect(summary(ours.issues ?? [])).toStrictEqual(summary(theirs.issues ?? []))
  }
  return ours.success
}

describe('compiled schemas', () => {
  it('compiles the plain kinds and leaves pipes, defaults and other kinds to valibot', () => {
    for (const schema of Object.values(schemas)) expect(isCompiled(schema)).toBe(true)
    expect(isCompiled(v.object({ a: v.pipe(v.string(), v.minLength(2)) }))).toBe(false)
    expect(isCompiled(v.object({ a: v.optional(v.number(), 5) }))).toBe(false)
    expect(isCompiled(v.strictObject({ a: v.string() }))).toBe(false)
    expect(isCompiled(v.union([v.string(), v.number()]))).toBe(false)
    expect(isCompiled(v.object({ a: v.literal(Number.NaN) }))).toBe(false)
  })

  it('accepts and rejects exactly what valibot does, with the same output', () => {
    const next = random(2026)
    const keys: Record<string, string[]> = {
      reading: ['deviceId', 'reading', 'ts'], result: ['ok', 'n'], nested: ['id', 'point', 'tags', 'samples', 'x', 'y', 'label', 't', 'on'],
      optional: ['a', 'b', 'c', 'd', 'e'], odd: ['a:b', '1', 'with "quotes"', 'constructor'], list: [], scalar: [], unit: ['unit', 'level'],
    }
    let accepted = 0
    for (const [name, schema] of Object.entries(schemas)) {
      for (let i = 0; i < 3_000; i++) if (expectSame(schema, randomInput(next, keys[name]!))) accepted++
    }
    expect(accepted).toBeGreaterThan(100)
  })

  it('gives valibot outputs for hand-picked valid inputs', () => {
    expect(expectSame(schemas.reading, { deviceId: 'd', reading: 1.5, ts: 3, extra: 'dropped' })).toBe(true)
    expect(expectSame(schemas.result, { ok: true, n: 1 })).toBe(true)
    expect(expectSame(schemas.nested, { id: 'i', point: { x: 1, y: 2, label: null }, tags: ['a'], samples: [{ t: 1, on: false }] })).toBe(true)
    expect(expectSame(schemas.optional, { a: 'a', e: true })).toBe(true)
    expect(expectSame(schemas.optional, { a: 'a', b: undefined, c: { d: 'x' }, e: false })).toBe(true)
    expect(expectSame(schemas.odd, { 'a:b': 's', '1': 1, constructor: true })).toBe(true)
    expect(expectSame(schemas.list, [1, 2, 3])).toBe(true)
    expect(expectSame(schemas.unit, { unit: 'F', level: 2 })).toBe(true)
    expect(expectSame(schemas.unit, { unit: 'K' })).toBe(false)
    expect(expectSame(schemas.reading, { deviceId: 'd', reading: Number.NaN, ts: 3 })).toBe(false)
    // An object whose prototype is a plain object is plain too (its constructor is Object), as valibot has it.
    expect(expectSame(schemas.reading, Object.create({ deviceId: 'inherited', reading: 1, ts: 2 }))).toBe(true)
    // A key named constructor (as a CBOR map may have) leaves the compiled path; valibot and the walk take it.
    expect(expectSame(schemas.reading, { deviceId: 'd', reading: 1, ts: 2, constructor: 'x' })).toBe(true)
  })

  it('accepts only a plain object for an object schema, compiled or not, at any depth', () => {
    class Reading {
      deviceId = 'd'
      reading = 1
      ts = 2
    }
    const arrayWithKeys = Object.assign([], { deviceId: 'd', reading: 1, ts: 2 })
    const dateWithKeys = Object.assign(new Date(0), { deviceId: 'd', reading: 1, ts: 2 })
    const mapWithKeys = Object.assign(new Map(), { deviceId: 'd', reading: 1, ts: 2 })
    const bytesWithKeys = Object.assign(new Uint8Array(2), { deviceId: 'd', reading: 1, ts: 2 })
    const piped = v.pipe(v.object({ deviceId: v.string(), reading: v.number(), ts: v.number() }), v.check(() => true))
    const allOptional = v.object({ a: v.optional(v.string()) })
    const nested = v.object({ inner: v.object({ a: v.optional(v.number()) }), list: v.array(v.looseObject({})) })
    const union = v.union([v.object({ a: v.optional(v.number()) }), v.array(v.number())])
    expect(isCompiled(piped)).toBe(false)
    for (const input of [arrayWithKeys, dateWithKeys, mapWithKeys, bytesWithKeys, new Reading()]) {
      for (const schema of [schemas.reading, piped]) {
        expect(v.safeParse(schema, input).success).toBe(true) // valibot takes it
        const r = safeParse(schema, input)
        expect(r.success).toBe(false)
        expect(r.issues?.[0]).toMatchObject({ kind: 'schema', expected: 'Object' })
      }
    }
    // The shapes of issue 11: arrays where an object was declared, at the top and nested.
    for (const input of [[], [1, 2], ['x']]) expect(safeParse(allOptional, input).success).toBe(false)
    expect(safeParse(nested, { inner: [], list: [] }).issues?.[0]?.path?.map((p) => p.key)).toEqual(['inner'])
    expect(safeParse(nested, { inner: {}, list: [{}, new Date(0)] }).issues?.[0]?.path?.map((p) => p.key)).toEqual(['list', 1])
    // In a union, the option valibot picks (the first that accepts) decides: an array option
    // ahead of the object option takes an array; behind it, the object option refuses it.
    expect(safeParse(union, [1, 2]).success).toBe(false)
    expect(safeParse(v.union([v.array(v.number()), v.object({ a: v.optional(v.number()) })]), [1, 2])).toMatchObject({ success: true, output: [1, 2] })
    expect(safeParse(union, new Date(0)).success).toBe(false)
    expect(safeParse(union, { a: 1 })).toMatchObject({ success: true, output: { a: 1 } })
    // Objects without a prototype are plain: both paths take them.
    const bare = Object.assign(Object.create(null) as object, { deviceId: 'd', reading: 1, ts: 2 })
    expect(safeParse(schemas.reading, bare)).toMatchObject({ success: true, output: { deviceId: 'd', reading: 1, ts: 2 } })
    expect(safeParse(piped, bare).success).toBe(true)
  })
})
