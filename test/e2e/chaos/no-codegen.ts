// Decodes envelopes and validates payloads in a process started with
// --disallow-code-generation-from-strings: the generated readers and acceptors cannot be made
// there, and everything must still work through cbor-x and valibot. Prints one JSON line.
import * as v from 'valibot'
import { createEnvelopeCodec, createMessageIdFactory, type Envelope } from '../../../runtime/index.js'
import { safeParse } from '../../../runtime/service/compiled-schema.js'

let generationBlocked = false
try {
  // eslint-disable-next-line @typescript-eslint/no-implied-eval
  new Function('return 1')
} catch {
  generationBlocked = true
}
const codec = createEnvelopeCodec()
const ids = createMessageIdFactory()
const schema = v.object({ deviceId: v.string(), reading: v.number() })
let decoded = 0
let valid = 0
for (let i = 0; i < 20; i++) {
  const env: Envelope = { v: 1, kind: 'event', id: ids(), src: 'dev', inst: 'i', at: i, service: 's', version: '1', name: 'e', payload: { deviceId: `d${i % 3}`, reading: i, note: `${'x'.repeat(i)}:${i}` } }
  const r = codec.decode(codec.encode(env))
  if (r.ok && r.envelope.id === env.id && (r.envelope.payload as { reading: number; note: string }).note === `${'x'.repeat(i)}:${i}`) decoded++
  if (r.ok && safeParse(schema, r.envelope.payload).success) valid++
}
const invalid = safeParse(schema, { deviceId: 1 }).success === false
process.stdout.write(`${JSON.stringify({ generationBlocked, decoded, valid, invalid })}\n`)
