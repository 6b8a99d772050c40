import { describe, expect, it } from 'vitest'
import { createDeadlineTracker } from '../../runtime/messaging/deadline-tracker.js'
import { createPendingReplies } from '../../runtime/messaging/pending-replies.js'
import { createRecentMap } from '../../runtime/recent-map.js'
import { createManualClock, ErrorCode, isOutpostError, type Envelope } from '../../runtime/index.js'

const T0 = Date.UTC(2026, 10, 26, 12, 0, 0)
const command = (id: string, deadline: number): Envelope => ({ v: 1, kind: 'command', id, src: 'a', inst: 'i', at: 0, service: 's', name: 'c', deadline })

describe('deadline tracker', () => {
  it('expires what is due, in any order of deadlines, and nothing that was removed', async () => {
    const clock = createManualClock(T0)
    const tracker = createDeadlineTracker(clock)
    const fired: string[] = []
    const entry = (name: string, inMs: number) => ({ deadline: T0 + inMs, expire: () => fired.push(name) })
    const late = entry('late', 60)
    const early = entry('early', 20)
    const removed = entry('removed', 10)
    tracker.add(late, T0)
    tracker.add(early, T0)
    tracker.add(removed, T0)
    tracker.remove(removed)
    await clock.advance(19)
    expect(fired).toEqual([])
    await clock.advance(1)
    expect(fired).toEqual(['early'])
    await clock.advance(40)
    expect(fired).toEqual(['early', 'late'])
    expect(tracker.size).toBe(0)
    await clock.advance(60_000)
    expect(fired).toEqual(['early', 'late'])
    expect(clock.pending).toBe(0)
  })

  it('waits for a deadline on real time: a clock set back or forward meanwhile neither delays nor hastens it', async () => {
    const clock = createManualClock(T0)
    const tracker = createDeadlineTracker(clock)
    const fired: string[] = []
    const entry = (name: string, deadline: number) => ({ deadline, expire: () => fired.push(name) })
    tracker.add(entry('back', T0 + 2_000), T0)
    await clock.advance(500)
    clock.jump(clock.now() - 3_600_000) // set back an hour: 1.5 s are left, not 1 h 1.5 s
    // Added after the step, against the clock as it now reads.
    tracker.add(entry('after', clock.now() + 1_000), clock.now())
    await clock.advance(999)
    expect(fired).toEqual([])
    await clock.advance(1)
    expect(fired).toEqual(['after'])
    await clock.advance(499)
    expect(fired).toEqual(['after'])
    await clock.advance(1)
    expect(fired).toEqual(['after', 'back'])
    tracker.add(entry('forward', clock.now() + 2_000), clock.now())
    clock.jump(clock.now() + 86_400_000) // set forward a day: still 2 s
    await clock.advance(1_999)
    expect(fired).toEqual(['after', 'back'])
    await clock.advance(1)
    expect(fired).toEqual(['after', 'back', 'forward'])
    expect(tracker.size).toBe(0)
  })

  it('keeps live entries through compaction of many removed ones', async () => {
    const clock = createManualClock(T0)
    const tracker = createDeadlineTracker(clock)
    let fired = 0
    const keep = { deadline: T0 + 30, expire: () => fired++ }
    tracker.add(keep, T0)
    for (let i = 0; i < 5_000; i++) {
      const e = { deadline: T0 + 10_000, expire: () => fired++ }
      tracker.add(e, T0)
      tracker.remove(e)
    }
    expect(tracker.size).toBe(1)
    await clock.advance(30)
    expect(fired).toBe(1)
    // Past every removed entry's deadline: none of them fires.
    await clock.advance(20_000)
    expect(fired).toBe(1)
    expect(tracker.size).toBe(0)
  })
})

describe('pending replies', () => {
  it('settles a request with its reply, times out another, and ignores a late reply', async () => {
    const clock = createManualClock(T0)
    const pending = createPendingReplies(clock)
    const answered = pending.wait(command('c1', T0 + 1_000), T0)
    let timedOut: unknown
    pending.wait(command('c2', T0 + 20), T0).catch((e: unknown) => (timedOut = e))
    expect(pending.settle({ v: 1, kind: 'reply', id: 'r1', src: 'b', inst: 'i', at: 0, corr: 'c1', payload: 42 })).toBe(true)
    expect((await answered).payload).toBe(42)
    await clock.advance(19)
    expect(timedOut).toBeUndefined()
    await clock.advance(1)
    expect(isOutpostError(timedOut, ErrorCode.TIMEOUT)).toBe(true)
    expect((timedOut as Error).message).toBe('no reply to s.c within 20 ms')
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

  it('keeps exactly the last `capacity` keys across many turns of its ring, and at least one', () => {
    const m = createRecentMap<number>(3)
    for (let i = 0; i < 11; i++) m.set(`k${i}`, i)
    expect(m.size).toBe(3)
    expect(['k7', 'k8', 'k9', 'k10'].map((k) => m.has(k))).toEqual([false, true, true, true])
    expect(m.get('k10')).toBe(10)
    const one = createRecentMap<number>(0)
    one.set('a', 1)
    one.set('b', 2)
    expect([one.has('a'), one.get('b'), one.size]).toEqual([false, 2, 1])
  })
})
