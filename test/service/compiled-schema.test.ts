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
  expect(ours.success).toBe(theirs.success)
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
    expect(expectSame(schemas.reading, Object.create({ deviceId: 'inherited', reading: 1, ts: 2 }))).toBe(true)
  })
})
