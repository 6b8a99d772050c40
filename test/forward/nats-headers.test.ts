// The forward target's NATS headers against nats.js's own: the same bytes on the wire for the
// same headers, the same names and values refused; and a message with them stored by JetStream
// reads back with every header.
import { randomBytes } from 'node:crypto'
import { jetstreamManager } from '@nats-io/jetstream'
import { connect, createInbox, headers as natsHeaders } from '@nats-io/transport-node'
import { describe, expect, it } from 'vitest'
import { natsMessageHeaders } from '../../gateway/forward/targets/nats-headers.js'

const text = (b: Uint8Array): string => new TextDecoder().decode(b)
/** What nats.js's publish calls on a message's headers (its MsgHdrs type leaves it out). */
const bytesOf = (h: unknown): Uint8Array => (h as { encode(): Uint8Array }).encode()

/** nats.js's bytes for the same headers, set in the same order. */
function theirs(headers: Record<string, string>, last: [string, string][]): Uint8Array {
  const h = natsHeaders()
  for (const [k, v] of Object.entries(headers)) h.set(k, v)
  for (const [k, v] of last) h.set(k, v)
  return bytesOf(h)
}

describe('NATS headers of a forwarded message', () => {
  const cases: [string, Record<string, string>, [string, string][]][] = [
    ['envelope fields', { 'Outpost-Id': '01M8H4S3B4XY9HZJ1S00000001', 'Outpost-Device': 'thermo-1', 'Outpost-Service': 'thermo', 'Outpost-Version': '1', 'Outpost-Event': 'reading' }, [['Content-Type', 'application/cbor'], ['Nats-Msg-Id', 'thermo-1/01M8H4S3B4XY9HZJ1S00000001']]],
    ['a name given twice moves to its later place', { 'Nats-Msg-Id': 'theirs', a: '1', 'Content-Type': 'text/plain' }, [['Content-Type', 'application/json'], ['Nats-Msg-Id', 'ours']]],
    ['values trimmed, names kept as written', { 'x-lower': '  padded\t', 'MiXeD-case': 'v', 'Trace-Parent': '00-abc-def-01' }, [['Nats-Msg-Id', 'd/1']]],
    ['UTF-8 and punctuation in values, an empty value', { 'Outpost-Device': 'gewächshaus-7', 'Odd!#$%&*+.^_`|~': 'a:b;c', 'Empty': '' }, [['Nats-Msg-Id', 'gewächshaus-7/1']]],
    ['numeric names first, as objects order them', { b: '2', '10': 'ten', a: '1' }, [['Nats-Msg-Id', 'x']]],
    ['nothing at all', {}, []],
  ]
  for (const [what, headers, last] of cases) {
    it(`writes what nats.js writes: ${what}`, () => {
      expect(text(bytesOf(natsMessageHeaders(headers, last)))).toBe(text(theirs(headers, last)))
    })
  }

  const refused: [string, Record<string, string>, [string, string][]][] = [
    ['a colon in a name', { 'a:b': '1' }, []],
    ['a space in a name', { 'a b': '1' }, []],
    ['a control character in a name', { 'a\u0001': '1' }, []],
    ['a non-ASCII name', { 'grün': '1' }, []],
    ['an empty-looking name of DEL', { '\u007f': '1' }, []],
    ['CR in a value', { a: 'x\ry' }, []],
    ['LF in a value', { a: 'x' }, [['Nats-Msg-Id', 'd/1\nInjected: yes']]],
  ]
  for (const [what, headers, last] of refused) {
    it(`refuses what nats.js refuses: ${what}`, () => {
      expect(() => theirs(headers, last)).toThrow()
      expect(() => natsMessageHeaders(headers, last)).toThrow(/header/)
    })
  }

  it('is carried by a real NATS server: a JetStream message reads back with each header', async () => {
    const nc = await connect({ servers: '127.0.0.1:4222' })
    const jsm = await jetstreamManager(nc)
    const r = randomBytes(4).toString('hex')
    const stream = `H_${r}`
    await jsm.streams.add({ name: stream, subjects: [`h${r}.>`] })
    try {
      const inbox = createInbox()
      const ack = new Promise<string>((resolve) => nc.subscribe(inbox, { max: 1, callback: (_e, m) => resolve(m.string()) }))
      const headers = { 'Outpost-Id': 'id-1', 'Outpost-Device': 'gewächshaus-7', 'Outpost-Event': 'reading' }
      nc.publish(`h${r}.d.reading`, new Uint8Array([1, 2, 3]), { reply: inbox, headers: natsMessageHeaders(headers, [['Content-Type', 'application/cbor'], ['Nats-Msg-Id', 'gewächshaus-7/id-1']]) })
      expect(JSON.parse(await ack)).toMatchObject({ stream, seq: 1 })
      const m = await jsm.streams.getMessage(stream, { seq: 1 })
      expect(m!.header.get('Outpost-Device')).toBe('gewächshaus-7')
      expect(m!.header.get('Outpost-Event')).toBe('reading')
      expect(m!.header.get('Content-Type')).toBe('application/cbor')
      expect(m!.header.get('Nats-Msg-Id')).toBe('gewächshaus-7/id-1')
      expect([...m!.data]).toEqual([1, 2, 3])
    } finally {
      await jsm.streams.delete(stream).catch(() => {})
      await nc.close()
    }
  })
})
