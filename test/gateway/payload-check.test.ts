// The gateway's payload check runs schemas devices announced: untrusted. No regular expression a
// device wrote runs on the gateway (one that backtracks badly would hold its event loop), nor
// uniqueItems (quadratic in a caller's array); a small document cannot make a huge or costly check.
import { describe, expect, it } from 'vitest'
import { createPayloadCheck, MAX_SCHEMA_NODES } from '../../gateway/commands/payload-check.js'
import { isOutpostError } from '../../runtime/errors.js'

const caught = (fn: () => void): unknown => {
  try {
    fn()
    return undefined
  } catch (err) {
    return err
  }
}

describe('payload check with schemas from devices', () => {
  it('does not run a catastrophic pattern on a crafted string; the rest of the schema still checks', () => {
    const check = createPayloadCheck()
    const schema = { type: 'object', properties: { name: { type: 'string', pattern: '^(a+)+$', maxLength: 100 } }, required: ['name'] }
    // 2^40 steps for a backtracking engine: this test would not end if the pattern ran.
    expect(caught(() => check.check(schema, 'draft-07', { name: `${'a'.repeat(40)}!` }, 'x.y'))).toBeUndefined()
    const tooLong = caught(() => check.check(schema, 'draft-07', { name: 'a'.repeat(101) }, 'x.y'))
    expect(isOutpostError(tooLong, 'VALIDATION_FAILED')).toBe(true)
  })

  it('runs no pattern anywhere in a schema (where a $ref leads too) but keeps a property called "pattern"; a schema that needs patternProperties anywhere is not used', () => {
    const check = createPayloadCheck()
    const crafted = `${'a'.repeat(40)}!`
    // Each of these would not end if its pattern ran.
    const schema = {
      type: 'object',
      properties: { pattern: { type: 'string', pattern: '^(a+)+$' }, list: { type: 'array', items: { type: 'string', pattern: '^(a+)+$' } }, hidden: { $ref: '#/x' } },
      // Under a word that is no keyword, where only a $ref finds it.
      x: { type: 'string', pattern: '^(a+)+$' },
      anyOf: [{ pattern: '^(a+)+$' }],
    }
    expect(caught(() => check.check(schema, 'draft-07', { pattern: crafted, list: [crafted], hidden: crafted }, 'x.y'))).toBeUndefined()
    // The property called "pattern" is still checked as a string.
    expect(isOutpostError(caught(() => check.check(schema, 'draft-07', { pattern: 5 }, 'x.y')), 'VALIDATION_FAILED')).toBe(true)
    expect(check.stats().unusable).toBe(0)
    for (const needs of [
      { type: 'object', patternProperties: { '^(a+)+$': { type: 'number' } } },
      { type: 'object', properties: { s: { $ref: '#/y' } }, y: { type: 'object', patternProperties: { '^(a+)+$': { type: 'number' } } } },
    ]) expect(caught(() => check.check(needs, 'draft-07', { [crafted]: 'text', s: { [crafted]: 'text' } }, 'x.y'))).toBeUndefined()
    expect(check.stats().unusable).toBe(2)
  })

  it('leaves uniqueItems to the device: a long array is not compared pair by pair; the rest of the schema still checks', () => {
    const check = createPayloadCheck()
    const schema = { type: 'array', uniqueItems: true, items: { type: 'array', items: { type: 'number' } }, maxItems: 300_000 }
    // 4.5e10 comparisons if they ran; and a duplicate, which the device refuses.
    const long = [...Array.from({ length: 300_000 }, (_, i) => [i]), [0]]
    expect(caught(() => check.check({ ...schema, maxItems: 300_001 }, 'draft-07', long, 'x.y'))).toBeUndefined()
    expect(isOutpostError(caught(() => check.check(schema, 'draft-07', long, 'x.y')), 'VALIDATION_FAILED')).toBe(true)
  })

  it('counts what a $ref names at each use: definitions that name the next twice (2 KB, 2^30 to check) and many uses of a large one are left to the device; a few uses are checked through', () => {
    const check = createPayloadCheck()
    // d0 → d1 twice → … → d29: an empty object is refused at each of 2^30 leaves, with allErrors.
    const definitions: Record<string, unknown> = { d29: { type: 'object', required: ['zz'] } }
    for (let i = 28; i >= 0; i--) definitions[`d${i}`] = { allOf: [{ $ref: `#/definitions/d${i + 1}` }, { $ref: `#/definitions/d${i + 1}` }] }
    const doubling = { definitions, $ref: '#/definitions/d0' }
    expect(JSON.stringify(doubling).length).toBeLessThan(2_500)
    expect(caught(() => check.check(doubling, 'draft-07', {}, 'x.y'))).toBeUndefined()
    // 250 uses of a 200-property definition: 50,000 to check.
    const leaf = { type: 'object', properties: Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`q${i}`, { type: 'number', maximum: i }])) }
    const many = { definitions: { leaf }, type: 'object', properties: Object.fromEntries(Array.from({ length: 250 }, (_, i) => [`p${i}`, { $ref: '#/definitions/leaf' }])) }
    expect(caught(() => check.check(many, 'draft-07', { p249: { q199: 1_000 } }, 'x.y'))).toBeUndefined()
    // A recursive schema: how often its reference is followed depends on the payload.
    const tree = { type: 'object', properties: { children: { type: 'array', items: { $ref: '#' } } } }
    expect(caught(() => check.check(tree, 'draft-07', { children: [{ children: 5 }] }, 'x.y'))).toBeUndefined()
    // Two uses of a small definition: checked through them.
    const small = { type: 'object', properties: Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`q${i}`, { type: 'number', maximum: i }])) }
    const few = { definitions: { small }, type: 'object', properties: { a: { $ref: '#/definitions/small' }, b: { $ref: '#/definitions/small' } } }
    const wrong = caught(() => check.check(few, 'draft-07', { b: { q49: 1_000 } }, 'x.y'))
    expect((wrong as { details: { issues: { path: string }[] } }).details.issues.map((i) => i.path)).toEqual(['b.q49'])
    expect(check.stats()).toEqual({ schemas: 4, unusable: 3 })
  })

  it('counts each value of an enum: 30,000 of them, checked against each item of a long array, are left to the device', () => {
    const check = createPayloadCheck()
    const big = { type: 'array', items: { enum: Array.from({ length: 30_000 }, (_, i) => i) } }
    expect(caught(() => check.check(big, 'draft-07', Array.from({ length: 80_000 }, () => -1), 'x.y'))).toBeUndefined()
    const small = { type: 'array', items: { enum: [1, 2, 3] } }
    expect(isOutpostError(caught(() => check.check(small, 'draft-07', [1, 4], 'x.y')), 'VALIDATION_FAILED')).toBe(true)
    expect(check.stats()).toEqual({ schemas: 2, unusable: 1 })
  })

  it(`leaves a schema of more than ${MAX_SCHEMA_NODES} objects to the device, and checks one of that many`, () => {
    const check = createPayloadCheck()
    const props = (n: number) => ({ type: 'object', properties: Object.fromEntries(Array.from({ length: n }, (_, i) => [`q${i}`, { type: 'number' }])) })
    // The schema itself is one object, its `properties` another: n + 2 in all.
    expect(isOutpostError(caught(() => check.check(props(MAX_SCHEMA_NODES - 2), 'draft-07', { q0: 'text' }, 'x.y')), 'VALIDATION_FAILED')).toBe(true)
    expect(caught(() => check.check(props(MAX_SCHEMA_NODES - 1), 'draft-07', { q0: 'text' }, 'x.y'))).toBeUndefined()
    // Objects in arrays count too (anyOf, items as a list).
    const options = { anyOf: Array.from({ length: MAX_SCHEMA_NODES }, () => ({ type: 'number' })) }
    expect(caught(() => check.check(options, 'draft-07', 'text', 'x.y'))).toBeUndefined()
    expect(check.stats()).toEqual({ schemas: 3, unusable: 2 })
  })
})
