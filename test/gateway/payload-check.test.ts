// The gateway's payload check runs schemas devices announced: untrusted. No regular expression a
// device wrote runs on the gateway (one that backtracks badly would hold its event loop), nor
// uniqueItems (quadratic in a caller's array); a small document cannot make a huge compiled one.
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

  it('compiles a definition that many $refs name once (a 17 KB document copied into each place would compile for seconds into gigabytes); it still checks through them', () => {
    const check = createPayloadCheck()
    const leaf = { type: 'object', properties: Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`q${i}`, { type: 'number', maximum: i }])) }
    const schema = { definitions: { leaf }, type: 'object', properties: Object.fromEntries(Array.from({ length: 250 }, (_, i) => [`p${i}`, { $ref: '#/definitions/leaf' }])) }
    expect(JSON.stringify(schema).length).toBeLessThan(17_000)
    const wrong = caught(() => check.check(schema, 'draft-07', { p249: { q199: 1_000 } }, 'x.y'))
    expect(isOutpostError(wrong, 'VALIDATION_FAILED')).toBe(true)
    expect((wrong as { details: { issues: { path: string }[] } }).details.issues.map((i) => i.path)).toEqual(['p249.q199'])
    expect(caught(() => check.check(schema, 'draft-07', { p0: { q199: 199 } }, 'x.y'))).toBeUndefined()
    expect(check.stats()).toEqual({ schemas: 1, unusable: 0 })
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
