import { describe, expect } from 'vitest'
import { contractTest } from './contract-kit.js'
import { createEnvelopeCodec, type Envelope, type Inbox, type SentReply } from '../../runtime/index.js'

export interface InboxContractOptions {
  /** An inbox remembering a window of 1 000 ids. */
  create(): { inbox: Inbox; reopen?: () => Inbox; dispose(): void }
  /** The adapter keeps its records across a reopen (its durability tests are declared only then). */
  durable: boolean
}

const codec = createEnvelopeCodec()
const TOPIC = 'ob/dev/rep/caller'
const reply = (corr: string, n = 1): Envelope => ({ v: 1, kind: 'reply', id: `r-${corr}`, src: 'dev', inst: 'i1', at: 5, corr, replyTo: 'caller', payload: { ok: true, n } })
/** A reply as a transport that moves bytes sent it: its topic and frame. */
const sentFrame = (corr: string, n = 1): SentReply => ({ topic: TOPIC, frame: codec.encode(reply(corr, n)) })

/** The envelope a stored reply carries, whichever form the adapter gave back. */
const envelopeOf = (sent: SentReply): Envelope => {
  if (sent.envelope !== undefined) return sent.envelope
  const decoded = codec.decode(sent.frame)
  if (!decoded.ok) throw new Error(`stored frame does not decode: ${decoded.error.message}`)
  return decoded.envelope
}

/** A record of a finished id, with its reply checked to be `sent` byte for byte. */
const expectSameFrame = (record: ReturnType<Inbox['get']>, sent: SentReply): void => {
  expect(record?.state).toBe('done')
  const kept = (record as { reply: SentReply }).reply
  expect(kept.topic).toBe(sent.topic)
  expect(kept.frame).toBeInstanceOf(Uint8Array)
  expect(Buffer.from(kept.frame!).equals(Buffer.from(sent.frame!))).toBe(true)
}

/** What every inbox does (runtime/ports/inbox.ts). */
export function describeInboxContract(name: string, opts: InboxContractOptions): void {
  const declare = contractTest<ReturnType<InboxContractOptions['create']>>()
  const test = (title: string, fn: (o: ReturnType<InboxContractOptions['create']>) => void): void => declare(title, opts.create, fn)

  describe(`Inbox contract: ${name}`, () => {
    test('knows a claimed id as running, and a completed one with the frame it sent, byte for byte, on its topic', ({ inbox }) => {
      expect(inbox.get('c1')).toBeUndefined()
      inbox.claim('c1', 'i1')
      expect(inbox.get('c1')).toEqual({ state: 'running', instance: 'i1' })
      const sent = sentFrame('c1')
      inbox.complete('c1', sent)
      expectSameFrame(inbox.get('c1'), sent)
      expect(envelopeOf((inbox.get('c1') as { reply: SentReply }).reply)).toEqual(expect.objectContaining({ id: 'r-c1', corr: 'c1', payload: { ok: true, n: 1 } }))
    })

    test('keeps a reply handed over as an envelope (in-process fast path): that envelope, or its encoding on the same topic', ({ inbox }) => {
      inbox.claim('c1', 'i1')
      inbox.complete('c1', { topic: TOPIC, envelope: reply('c1', 3) })
      const record = inbox.get('c1')
      expect(record?.state).toBe('done')
      const kept = (record as { reply: SentReply }).reply
      expect(kept.topic).toBe(TOPIC)
      expect(envelopeOf(kept)).toEqual(reply('c1', 3))
    })

    test('keeps a reply that has no topic (it could not be routed) as its envelope, to be routed again', ({ inbox }) => {
      inbox.claim('c1', 'i1')
      inbox.complete('c1', { envelope: reply('c1', 4) })
      const kept = (inbox.get('c1') as { reply: SentReply }).reply
      expect(kept).toEqual({ envelope: reply('c1', 4) })
    })

    test('records a reply only for an id it took on', ({ inbox }) => {
      inbox.complete('never-claimed', sentFrame('never-claimed'))
      expect(inbox.get('never-claimed')).toBeUndefined()
    })

    test('hands an id claimed again (a later start running it once more) to the new instance, until its reply', ({ inbox }) => {
      inbox.claim('c1', 'gone-instance')
      inbox.claim('c1', 'i2')
      expect(inbox.get('c1')).toEqual({ state: 'running', instance: 'i2' })
      const sent = sentFrame('c1', 2)
      inbox.complete('c1', sent)
      expectSameFrame(inbox.get('c1'), sent)
      expect(envelopeOf((inbox.get('c1') as { reply: SentReply }).reply).payload).toEqual({ ok: true, n: 2 })
    })

    test('a claim again after a reply forgets that reply (the id runs again)', ({ inbox }) => {
      inbox.claim('c1', 'i1')
      inbox.complete('c1', sentFrame('c1'))
      inbox.claim('c1', 'i2')
      expect(inbox.get('c1')).toEqual({ state: 'running', instance: 'i2' })
    })

    test('forgets the oldest ids beyond its window', ({ inbox }) => {
      for (let i = 0; i < 2_500; i++) inbox.claim(`m${i}`, 'i1')
      expect(inbox.get('m0')).toBeUndefined()
      expect(inbox.get('m2499')).toEqual({ state: 'running', instance: 'i1' })
    })

    if (!opts.durable) return

    test('keeps ids taken on and replies sent (the same bytes on the same topic) across a reopen', ({ inbox, reopen }) => {
      inbox.claim('running', 'i1')
      inbox.claim('done', 'i1')
      const sent = sentFrame('done')
      inbox.complete('done', sent)
      inbox.claim('fast', 'i1')
      inbox.complete('fast', { topic: TOPIC, envelope: reply('fast') })
      const again = reopen!()
      expect(again.get('running')).toEqual({ state: 'running', instance: 'i1' })
      expectSameFrame(again.get('done'), sent)
      const fast = (again.get('fast') as { reply: SentReply }).reply
      expect(fast.topic).toBe(TOPIC)
      expect(envelopeOf(fast)).toEqual(reply('fast'))
    })
  })
}
