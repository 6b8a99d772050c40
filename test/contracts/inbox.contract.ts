import { describe, expect } from 'vitest'
import { contractTest } from './contract-kit.js'
import type { Envelope, Inbox } from '../../runtime/index.js'

export interface InboxContractOptions {
  /** An inbox remembering a window of 1 000 ids. */
  create(): { inbox: Inbox; reopen?: () => Inbox; dispose(): void }
  /** The adapter keeps its records across a reopen (its durability tests are declared only then). */
  durable: boolean
}

const reply = (corr: string, n = 1): Envelope => ({ v: 1, kind: 'reply', id: `r-${corr}`, src: 'dev', inst: 'i1', at: 5, corr, replyTo: 'caller', payload: { ok: true, n } })

/** What every inbox does (runtime/ports/inbox.ts). */
export function describeInboxContract(name: string, opts: InboxContractOptions): void {
  const declare = contractTest<ReturnType<InboxContractOptions['create']>>()
  const test = (title: string, fn: (o: ReturnType<InboxContractOptions['create']>) => void): void => declare(title, opts.create, fn)

  describe(`Inbox contract: ${name}`, () => {
    test('knows a claimed id as running, and a completed one with its reply', ({ inbox }) => {
      expect(inbox.get('c1')).toBeUndefined()
      inbox.claim('c1', 'i1')
      expect(inbox.get('c1')).toEqual({ state: 'running', instance: 'i1' })
      inbox.complete('c1', reply('c1'))
      expect(inbox.get('c1')).toEqual({ state: 'done', reply: expect.objectContaining({ id: 'r-c1', corr: 'c1', payload: { ok: true, n: 1 } }) })
    })

    test('records a reply only for an id it took on', ({ inbox }) => {
      inbox.complete('never-claimed', reply('never-claimed'))
      expect(inbox.get('never-claimed')).toBeUndefined()
    })

    test('hands an id claimed again (a later start running it once more) to the new instance, until its reply', ({ inbox }) => {
      inbox.claim('c1', 'gone-instance')
      inbox.claim('c1', 'i2')
      expect(inbox.get('c1')).toEqual({ state: 'running', instance: 'i2' })
      inbox.complete('c1', reply('c1', 2))
      expect(inbox.get('c1')).toEqual({ state: 'done', reply: expect.objectContaining({ payload: { ok: true, n: 2 } }) })
    })

    test('forgets the oldest ids beyond its window', ({ inbox }) => {
      for (let i = 0; i < 2_500; i++) inbox.claim(`m${i}`, 'i1')
      expect(inbox.get('m0')).toBeUndefined()
      expect(inbox.get('m2499')).toEqual({ state: 'running', instance: 'i1' })
    })

    if (!opts.durable) return

    test('keeps ids taken on and replies sent across a reopen', ({ inbox, reopen }) => {
      inbox.claim('running', 'i1')
      inbox.claim('done', 'i1')
      inbox.complete('done', reply('done'))
      const again = reopen!()
      expect(again.get('running')).toEqual({ state: 'running', instance: 'i1' })
      expect(again.get('done')).toEqual({ state: 'done', reply: expect.objectContaining({ corr: 'done', payload: { ok: true, n: 1 } }) })
    })
  })
}
