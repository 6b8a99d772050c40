import { execFileSync } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { buildHelperProcess } from '../helpers/processes.js'

// The frame reader and the schema acceptors generate code; where Node forbids that, decoding
// and validation fall back to cbor-x and valibot with the same results.
describe('without code generation', () => {
  it('decodes frames and validates payloads all the same', async () => {
    const script = await buildHelperProcess('no-codegen')
    const out = execFileSync(process.execPath, ['--disallow-code-generation-from-strings', script], { encoding: 'utf8' })
    expect(JSON.parse(out)).toEqual({ generationBlocked: true, decoded: 20, valid: 20, invalid: true })
  })
})
