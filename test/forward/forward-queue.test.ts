// The gateway's forward queue (forward.db) through its public API: order per target, bounds and
// full policies, dead letters, and what survives closing and opening the file again.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { openForwardQueue, rowBytes, type ForwardQueue, type NewForwardMessage, type QueueLimit } from '../../gateway/forward/forward-queue.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'

const headers = { 'Outpost-Device': 'd1' }
const msg = (target: string, n: number, bodyBytes = 10, device = 'd1'): NewForwardMessage => ({
  target,
  id: `id-${n}`,
  device,
  subject: `s.${n}`,
  headers,
  contentType: 'application/cbor',
  body: Buffer.alloc(bodyBytes, n % 256),
  receivedAt: 1_000 + n,
})
const size = (m: NewForwardMessage): number => rowBytes(m, JSON.stringify(m.headers))

describe('forward queue', () => {
  const cleanup = cleanupAfterEach()
  const open = (limits: Record<string, QueueLimit> = {}): { q: ForwardQueue; file: string; reopen: () => ForwardQueue } => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-fwd-'))
    const file = path.join(dir, 'forward.db')
    const opened: ForwardQueue[] = []
    const make = (): ForwardQueue => {
      const q = openForwardQueue({ path: file, limits })
      opened.push(q)
      return q
    }
    cleanup(() => {
      for (const q of opened) q.close()
      rmSync(dir, { recursive: true, force: true })
    })
    return { q: make(), file, reopen: make }
  }

  it('keeps each target’s messages in arrival order, apart from the others’, and across a reopen', () => {
    const { q, reopen } = open()
    q.append([[msg('a', 1), msg('b', 1)], [msg('a', 2)], [msg('b', 2), msg('a', 3)]])
    expect(q.next('a', 0, 10).map((m) => m.id)).toEqual(['id-1', 'id-2', 'id-3'])
    expect(q.next('b', 0, 10).map((m) => m.id)).toEqual(['id-1', 'id-2'])
    const [first] = q.next('a', 0, 1)
    expect(q.next('a', first!.seq, 10).map((m) => m.id)).toEqual(['id-2', 'id-3'])
    expect(first).toMatchObject({ device: 'd1', subject: 's.1', headers, contentType: 'application/cbor', receivedAt: 1_001 })
    q.remove('a', [first!.seq])
    q.close()
    const again = reopen()
    expect(again.next('a', 0, 10).map((m) => m.id)).toEqual(['id-2', 'id-3'])
    expect(again.backlog('a')).toMatchObject({ messages: 2, oldestAt: 1_002 })
    expect(again.backlog('b').messages).toBe(2)
  })

  it('drop-oldest makes room by dropping the oldest of that target only; drop-newest keeps the old ones', () => {
    const one = size(msg('x', 1, 100))
    const { q } = open({ old: { maxBytes: one * 3, whenFull: 'drop-oldest' }, young: { maxBytes: one * 3, whenFull: 'drop-newest' } })
    const results = q.append([1, 2, 3, 4, 5].map((n) => [msg('old', n, 100), msg('young', n, 100)]))
    expect(q.next('old', 0, 10).map((m) => m.id)).toEqual(['id-3', 'id-4', 'id-5'])
    expect(q.next('young', 0, 10).map((m) => m.id)).toEqual(['id-1', 'id-2', 'id-3'])
    const { messages, ...counts } = results[3]!
    expect(counts).toEqual({ queued: 1, droppedNewest: ['young'], droppedOldest: { old: 1 } })
    // The rows queued, with the places the pumps take them from (and read back the same).
    expect(messages.map((m) => [m.target, m.id])).toEqual([['old', 'id-4']])
    expect(q.next('old', messages[0]!.seq - 1, 1)[0]).toMatchObject({ seq: messages[0]!.seq, id: 'id-4' })
    expect(q.backlog('old').bytes).toBe(one * 3)
  })

  it("dead letters are bounded by the target's maxBytes too: the oldest go first, and are counted", () => {
    const one = size(msg('t', 1, 100))
    const { q } = open({ t: { maxBytes: one * 3, whenFull: 'drop-oldest' } })
    for (let n = 1; n <= 5; n++) {
      q.append([[msg('t', n, 100)]])
      const [m] = q.next('t', 0, 1)
      q.deadLetter('t', m!.seq, `refused ${n}`, 1_000 + n)
    }
    expect(q.dead({ target: 't' }).map((d) => d.id)).toEqual(['id-3', 'id-4', 'id-5'])
    expect(q.deadCount('t')).toBe(3)
    expect(q.deadEvicted('t')).toBe(2)
  })

  it('refuse: an event with a row for a full target is refused whole (nothing queued for any target)', () => {
    const one = size(msg('x', 1, 100))
    const { q } = open({ strict: { maxBytes: one * 2, whenFull: 'refuse' } })
    const results = q.append([1, 2, 3].map((n) => [msg('other', n, 100), msg('strict', n, 100)]))
    expect(results.map((r) => r === undefined)).toEqual([false, false, true])
    expect(q.backlog('other').messages).toBe(2)
    expect(q.backlog('strict').messages).toBe(2)
  })

  it('dead letters keep the reason; redrive puts them back at the end, purge deletes them', () => {
    const { q } = open()
    q.append([[msg('t', 1)], [msg('t', 2)], [msg('t', 3)]])
    const [m1, m2] = q.next('t', 0, 2)
    q.deadLetter('t', m1!.seq, 'subject not allowed', 5_000)
    q.deadLetter('t', m2!.seq, 'payload too large', 5_001)
    expect(q.backlog('t').messages).toBe(1)
    expect(q.deadCount('t')).toBe(2)
    expect(q.dead({ target: 't' }).map((d) => [d.id, d.reason, d.failedAt])).toEqual([
      ['id-1', 'subject not allowed', 5_000],
      ['id-2', 'payload too large', 5_001],
    ])
    expect(q.redrive({ seqs: [m1!.seq] })).toBe(1)
    expect(q.next('t', 0, 10).map((m) => m.id)).toEqual(['id-3', 'id-1'])
    expect(q.purge({ target: 't' })).toBe(1)
    expect(q.deadCount('t')).toBe(0)
  })

  it('removing a seq twice, or one dropped meanwhile, changes nothing', () => {
    const { q } = open()
    q.append([[msg('t', 1)], [msg('t', 2)]])
    const [m1] = q.next('t', 0, 1)
    q.remove('t', [m1!.seq])
    q.remove('t', [m1!.seq, 999_999])
    expect(q.backlog('t').messages).toBe(1)
  })

  it('removes with the bytes the caller knows (as the pump does), and counts again when some were gone', () => {
    const { q, reopen } = open()
    const rows = Array.from({ length: 150 }, (_, n) => msg('t', n, 10 + n))
    const [queued] = q.append([rows])
    // Each message carries what its row counts for, read back or not.
    expect(queued!.messages.map((m) => m.bytes)).toEqual(rows.map(size))
    expect(q.next('t', 0, 150).map((m) => m.bytes)).toEqual(rows.map(size))
    const seqs = queued!.messages.map((m) => m.seq)
    // 130: two batches of 64 and two one by one.
    q.remove('t', seqs.slice(0, 130), rows.slice(0, 130).reduce((b, m) => b + size(m), 0))
    expect(q.backlog('t')).toMatchObject({ messages: 20, bytes: rows.slice(130).reduce((b, m) => b + size(m), 0) })
    // Another handle removes one of the rest; the bytes given then count it twice: counted again from the table.
    const other = reopen()
    other.remove('t', [seqs[140]!])
    q.remove('t', seqs.slice(130, 145), rows.slice(130, 145).reduce((b, m) => b + size(m), 0))
    expect(q.backlog('t')).toMatchObject({ messages: 5, bytes: rows.slice(145).reduce((b, m) => b + size(m), 0) })
  })
})
