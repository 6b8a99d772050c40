// The gateway's payload check runs schemas devices announced: untrusted. No regular expression a
// device wrote runs on the gateway (one that backtracks badly would hold its event loop).
import { describe, expect, it } from 'vitest'
import { createPayloadCheck, withoutPatterns } from '../../gateway/commands/payload-check.js'
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

  it('takes patterns out of every subschema but leaves a property called "pattern"; refuses to use patternProperties', () => {
    const schema = { type: 'object', properties: { pattern: { type: 'string', pattern: 'x+' }, list: { type: 'array', items: { type: 'string', pattern: '(b*)*c' } } }, anyOf: [{ pattern: 'y' }] }
    expect(withoutPatterns(schema)).toBe(true)
    expect(JSON.stringify(schema)).not.toMatch(/"pattern":"/)
    expect(Object.keys(schema.properties)).toEqual(['pattern', 'list'])
    expect(withoutPatterns({ type: 'object', additionalProperties: { patternProperties: { '^(a+)+$': {} } } })).toBe(false)
    const check = createPayloadCheck()
    expect(caught(() => check.check({ type: 'object', patternProperties: { '^(a+)+$': { type: 'number' } } }, 'draft-07', { [`${'a'.repeat(40)}!`]: 'text' }, 'x.y'))).toBeUndefined()
    expect(check.stats().unusable).toBe(1)
  })
})
