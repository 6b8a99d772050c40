import { describe, expect, it } from 'vitest'
import { createDeadlineTracker } from '../../runtime/messaging/deadline-tracker.js'
import { createPendingReplies } from '../../runtime/messaging/pending-replies.js'
import { createRecentMap } from '../../runtime/recent-map.js'
import { ErrorCode, isOutpostError, type Envelope } from '../../runtime/index.js'

const command = (id: string, deadline: number): Envelope => ({ v: 1, kind: 'command', id, src: 'a', inst: 'i', at: 0, service: 's', name: 'c', deadline })

describe('deadline tracker', () => {
  it('expires what is due, in any order of deadlines, and nothing that was removed', async () => {
    const tracker = createDeadlineTracker()
    const fired: string[] = []
    const entry = (name: string, inMs: number) => ({ deadline: Date.now() + inMs, expire: () => fired.push(name) })
    const late = entry('late', 60)
    const early = entry('early', 20)
    const removed = entry('removed', 10)
    tracker.add(late)
    tracker.add(early)
    tracker.add(removed)
    tracker.remove(removed)
    await new Promise((r) => setTimeout(r, 100))
    expect(fired).toEqual(['early', 'late'])
    expect(tracker.size).toBe(0)
  })

  it('keeps live entries through compaction of many removed ones', async () => {
    const tracker = createDeadlineTracker()
    let fired = 0
    const keep = { deadline: Date.now() + 30, expire: () => fired++ }
    tracker.add(keep)
    for (let i = 0; i < 5_000; i++) {
      const e = { deadline: Date.now() + 10_000, expire: () => fired++ }
      tracker.add(e)
      tracker.remove(e)
    }
    expect(tracker.size).toBe(1)
    await new Promise((r) => setTimeout(r, 80))
    expect(fired).toBe(1)
  })
})

describe('pending replies', () => {
  it('settles a request with its reply, times out another, and ignores a late reply', async () => {
    const pending = createPendingReplies()
    const answered = pending.wait(command('c1', Date.now() + 1_000), Date.now())
    const forgotten = pending.wait(command('c2', Date.now() + 20), Date.now()).catch((e: unknown) => e)
    expect(pending.settle({ v: 1, kind: 'reply', id: 'r1', src: 'b', inst: 'i', at: 0, corr: 'c1', payload: 42 })).toBe(true)
    expect((await answered).payload).toBe(42)
    expect(isOutpostError(await forgotten, ErrorCode.TIMEOUT)).toBe(true)
    expect(pending.settle({ v: 1, kind: 'reply', id: 'r2', src: 'b', inst: 'i', at: 0, corr: 'c2' })).toBe(false)
    expect(pending.size).toBe(0)
  })
})

describe('recent map', () => {
  it('forgets the oldest key once full and updates existing keys in place', () => {
    const m = createRecentMap<number>(3)
    m.set('a', 1)
    m.set('b', 2)
    m.set('c', 3)
    m.set('a', 10) // update: does not take a new slot
    m.set('d', 4) // evicts the oldest inserted key, 'a'
    expect(m.has('a')).toBe(false)
    expect([m.get('b'), m.get('c'), m.get('d')]).toEqual([2, 3, 4])
    expect(m.size).toBe(3)
  })
})
