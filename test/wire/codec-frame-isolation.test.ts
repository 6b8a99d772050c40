// Found by the fuzz test (seed 1730478391): the codec reads a frame's fields into an array it
// reuses, and a frame the fast reader gave up on (here: a whole envelope followed by one byte
// more) left its fields there, so the next frame, if shorter, was read with them.
import { describe, expect, it } from 'vitest'
import { createEnvelopeCodec } from '../../runtime/wire/codec.js'
import { commandSlots, rawFrame, replySlots } from '../helpers/raw-wire.js'

const command = rawFrame(commandSlots({ id: 'C'.repeat(26), src: 'caller', service: 'target', name: 'put', target: 'dev', payload: { name: 'x', n: 1 } }))

/** An 18-field envelope with `error` set, then one byte more: not one CBOR item. */
function trailing(error: unknown): Buffer {
  const slots = commandSlots({ src: 'attacker', service: 'target', name: 'put', target: 'dev', payload: { name: 'poison', n: 666 } })
  slots.push(error)
  return Buffer.concat([rawFrame(slots), Buffer.from([0])])
}

describe('decoding one frame after another', () => {
  it('reads a valid frame the same after a malformed one', () => {
    const codec = createEnvelopeCodec()
    const alone = codec.decode(command)
    expect(alone.ok).toBe(true)
    expect(codec.decode(trailing('not an error map')).ok).toBe(false)
    expect(codec.decode(command)).toEqual(alone)
  })

  it('never lends a field of a malformed frame to the next one', () => {
    const codec = createEnvelopeCodec()
    expect(codec.decode(trailing({ code: 'INJECTED', message: 'from another frame' })).ok).toBe(false)
    // A reply without an error field: it must not arrive as a failed call.
    const reply = rawFrame(replySlots({ id: 'R'.repeat(26), src: 'peer', corr: 'C'.repeat(26), replyTo: 'dev', payload: { n: 1 } }).slice(0, 17))
    const r = codec.decode(reply)
    expect(r.ok && r.envelope.error).toBeUndefined()
  })
})
