// outpost/cloud's readForwarded: both bodies the gateway forwards (the device's CBOR frame, the
// gateway's JSON form) read to the same event; anything else is a typed error, never a raw throw.
import { describe, expect, it } from 'vitest'
import { readForwarded } from '../../gateway/cloud/index.js'
import { jsonBody } from '../../gateway/forward/router.js'
import { isOutpostError } from '../../runtime/errors.js'
import { createEnvelopeCodec } from '../../runtime/wire/codec.js'
import type { Envelope } from '../../runtime/wire/envelope.js'

const env: Envelope = { v: 1, kind: 'event', id: 'e-1', src: 'thermo-1', inst: 'i-7', at: 1_795_740_000_000, service: 'thermo', version: '1', name: 'reading', payload: { celsius: 21.5, raw: new Uint8Array([1, 2]) }, traceparent: '00-0123456789abcdef0123456789abcdef-0123456789abcdef-01' }
const topic = { device: 'thermo-1', service: 'thermo', version: '1', event: 'reading' }
const expected = { id: 'e-1', device: 'thermo-1', instance: 'i-7', service: 'thermo', version: '1', event: 'reading', at: 1_795_740_000_000, traceparent: env.traceparent }

describe('readForwarded', () => {
  it('reads the CBOR frame and the JSON form to the same event (bytes become base64 text in JSON)', () => {
    const cbor = readForwarded(createEnvelopeCodec().encode(env), { 'Content-Type': 'application/cbor' })
    expect(cbor).toMatchObject(expected)
    const p = cbor.payload as { celsius: number; raw: Uint8Array }
    expect([p.celsius, [...p.raw]]).toEqual([21.5, [1, 2]])
    const json = readForwarded(jsonBody(env, topic), { 'content-type': 'application/json' })
    expect(json).toMatchObject(expected)
    expect(json.payload).toEqual({ celsius: 21.5, raw: 'AQI=' })
    // Without headers, the first byte tells them apart.
    expect(readForwarded(jsonBody(env, topic)).id).toBe('e-1')
    // As large as the gateway's broker takes events (1 MiB by default): more than a device's frame limit.
    const big = readForwarded(createEnvelopeCodec({ maxFrameBytes: 2 * 1024 * 1024 }).encode({ ...env, payload: { pad: 'p'.repeat(900 * 1024) } }))
    expect((big.payload as { pad: string }).pad).toHaveLength(900 * 1024)
  })

  it('refuses what is not a forwarded event with a typed error', () => {
    const bad: [Uint8Array, Record<string, string>][] = [
      [new TextEncoder().encode('{not json'), { 'Content-Type': 'application/json' }],
      [new TextEncoder().encode('[1,2]'), { 'Content-Type': 'application/json' }],
      [new TextEncoder().encode('{"id":"x","device":"d","service":"s","version":"1","event":"e","at":1}'), { 'Content-Type': 'application/json' }],
      [new TextEncoder().encode('{"id":"x","device":"d","instance":"i","service":"s","version":"1","event":"e","at":"soon"}'), { 'Content-Type': 'application/json' }],
      [new Uint8Array([0xff, 0x00, 0x13]), { 'Content-Type': 'application/cbor' }],
      [createEnvelopeCodec().encode({ ...env, kind: 'presence' } as Envelope), { 'Content-Type': 'application/cbor' }],
    ]
    for (const [body, headers] of bad) {
      let err: unknown
      try {
        readForwarded(body, headers)
      } catch (e) {
        err = e
      }
      expect(isOutpostError(err), String(err)).toBe(true)
    }
  })
})
