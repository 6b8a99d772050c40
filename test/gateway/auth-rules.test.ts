// The gatekeeper's pure rules: filter within filter, the topic layouts a device may publish on,
// what it may subscribe to, and how failed logins from one address slow down.
import { describe, expect, it } from 'vitest'
import { createLoginThrottle, type LoginTurn } from '../../gateway/auth/login-throttle.js'
import { describesDevice, deviceFilters, filterWithin, layoutOf, maySubscribe, routedAsTopic } from '../../gateway/auth/topic-rules.js'
import type { Envelope, EnvelopeKind } from '../../runtime/wire/envelope.js'
import { createTopics } from '../../runtime/wire/topics.js'

describe('filterWithin', () => {
  it('takes a filter every one of whose topics the allowed filter matches, level by level', () => {
    const within: [string, string][] = [
      ['ob/+/evt/#', 'ob/+/evt/#'],
      ['ob/thermo-1/evt/thermo/1/reading', 'ob/+/evt/#'],
      ['ob/+/evt/+/+/+', 'ob/+/evt/#'],
      ['ob/+/evt/thermo/#', 'ob/+/evt/#'],
      ['ob/+/evt', 'ob/+/evt/#'], // '#' also matches its parent level [MQTT-4.7.1-2]
      ['ob/+/evt/thermo/1/+', 'ob/+/evt/thermo/1/+'],
      ['ob/x/evt/thermo/1/reading', 'ob/+/evt/thermo/1/+'],
      ['ob/+/cmd/me/thermo/1/+', 'ob/+/cmd/me/#'],
      ['ob/a/cmd/me/#', 'ob/+/cmd/me/#'],
      ['ob/+/status', 'ob/+/status'],
      ['ob/other/status', 'ob/+/status'],
      ['anything/at/all', '#'],
    ]
    for (const [f, a] of within) expect(filterWithin(f, a), `${f} within ${a}`).toBe(true)
  })

  it('refuses a filter that reaches beyond the allowed one', () => {
    const beyond: [string, string][] = [
      ['#', 'ob/+/evt/#'],
      ['ob/#', 'ob/+/evt/#'],
      ['ob/+/#', 'ob/+/evt/#'],
      ['+/+/evt/#', 'ob/+/evt/#'],
      ['ob/+/+/#', 'ob/+/evt/#'],
      ['ob/+/evt/+/+/+', 'ob/+/evt/thermo/1/+'], // a wider service level
      ['ob/+/evt/thermo/#', 'ob/+/evt/thermo/1/+'],
      ['ob/+/evt/thermo/1/+/extra', 'ob/+/evt/thermo/1/+'],
      ['ob/+/evt/thermo/1', 'ob/+/evt/thermo/1/+'],
      ['ob/+/cmd/other/#', 'ob/+/cmd/me/#'],
      ['ob/+/cmd/+/#', 'ob/+/cmd/me/#'],
      ['ob/+/rep/+', 'ob/+/rep/me'],
      ['ob/+/rep/#', 'ob/+/rep/me'],
      ['ob/+/status/#', 'ob/+/status'],
      ['$SYS/#', '#'], // MQTT-4.7.2-1: '#' does not reach '$' topics
      ['$SYS/broker/clients', '+/+/+'],
    ]
    for (const [f, a] of beyond) expect(filterWithin(f, a), `${f} within ${a}`).toBe(false)
  })
})

describe('subscriptions a device may make', () => {
  const allowed = deviceFilters('ob', 'thermo-1', ['ob/+/evt/#'])
  const narrow = deviceFilters('ob', 'display-1', ['ob/+/evt/thermo/1/+'])

  it('every filter the runtime subscribes to, with the default role', () => {
    const t = createTopics('ob')
    const filters = [
      t.commandFilter('thermo-1', 'thermo', '1'),
      t.replyFilter('thermo-1'),
      t.presenceFilter(),
      t.presenceTopic('display-1'),
      t.eventFilter({}), // a pattern subscription: every event
      t.eventFilter({ service: 'display', event: 'shown' }),
      t.eventFilter({ device: 'thermo-1', service: 'thermo', version: '1', event: 'due' }), // a binding to its own schedule
      'ob/+/cmd/thermo-1/#',
    ]
    for (const f of filters) expect(maySubscribe(f, allowed, 'ob'), f).toBe(true)
  })

  it("nobody else's commands or replies, nothing outside the prefix, and events only within the role", () => {
    const refused = ['#', '$SYS/#', 'ob/#', 'ob/+/cmd/+/#', 'ob/+/cmd/display-1/#', 'ob/+/rep/+', 'ob/+/rep/display-1', 'ob/+/+/#', 'other/thing']
    for (const f of refused) expect(maySubscribe(f, allowed, 'ob'), f).toBe(false)
    expect(maySubscribe('ob/+/evt/thermo/1/+', narrow, 'ob')).toBe(true)
    expect(maySubscribe('ob/thermo-9/evt/thermo/1/reading', narrow, 'ob')).toBe(true)
    expect(maySubscribe('ob/+/evt/+/+/+', narrow, 'ob')).toBe(false)
    expect(maySubscribe('ob/+/evt/display/1/+', narrow, 'ob')).toBe(false)
  })

  it('a role filter outside the events opens nothing', () => {
    const greedy = deviceFilters('ob', 'd', ['ob/#', '#', 'ob/+/cmd/+/#'])
    expect(greedy.events).toEqual([])
    expect(maySubscribe('ob/+/cmd/other/#', greedy, 'ob')).toBe(false)
    expect(maySubscribe('ob/+/evt/#', greedy, 'ob')).toBe(false)
  })
})

describe('publish layouts', () => {
  const levels = (t: string): string[] => t.split('/')
  it('names the kind of each documented layout and nothing else', () => {
    expect(layoutOf(levels('ob/me/cmd/target/svc/1/go'))).toBe('command')
    expect(layoutOf(levels('ob/me/rep/caller'))).toBe('reply')
    expect(layoutOf(levels('ob/me/evt/svc/1/happened'))).toBe('event')
    expect(layoutOf(levels('ob/me/status'))).toBe('presence')
    expect(layoutOf(levels('ob/me/contract'))).toBe('contract')
    for (const t of ['ob/me', 'ob/me/cmd/target/svc/1', 'ob/me/cmd/target/svc/1/go/more', 'ob/me/rep', 'ob/me/evt/svc/1', 'ob/me/status/x', 'ob/me/contract/x', 'ob/me/other', 'ob/me/evt/svc//x', 'ob/me/rep/\u0001']) {
      expect(layoutOf(levels(t)), t).toBeUndefined()
    }
  })

  it('takes an envelope only when it is routed as its topic says', () => {
    const base = { v: 1, id: 'x', src: 'me', inst: 'i', at: 0 }
    const cmd: Envelope = { ...base, kind: 'command', target: 'target', service: 'svc', version: '1', name: 'go' }
    expect(routedAsTopic(cmd, 'command', levels('ob/me/cmd/target/svc/1/go'))).toBe(true)
    expect(routedAsTopic(cmd, 'command', levels('ob/me/cmd/other/svc/1/go'))).toBe(false)
    expect(routedAsTopic(cmd, 'event', levels('ob/me/evt/svc/1/go'))).toBe(false)
    const reply: Envelope = { ...base, kind: 'reply', corr: 'c', replyTo: 'caller' }
    expect(routedAsTopic(reply, 'reply', levels('ob/me/rep/caller'))).toBe(true)
    expect(routedAsTopic(reply, 'reply', levels('ob/me/rep/someone-else'))).toBe(false)
    const evt: Envelope = { ...base, kind: 'event', service: 'svc', name: 'happened' }
    expect(routedAsTopic(evt, 'event', levels('ob/me/evt/svc/1/happened'))).toBe(true)
    expect(routedAsTopic(evt, 'event', levels('ob/me/evt/svc/2/happened'))).toBe(false)
    // The status topic carries presence, the contract topic the contract document, not each other's.
    const presence: Envelope = { ...base, kind: 'presence', payload: { online: true } }
    const contract: Envelope = { ...base, kind: 'contract', payload: {} }
    expect(routedAsTopic(presence, 'presence', levels('ob/me/status'))).toBe(true)
    expect(routedAsTopic(contract, 'contract', levels('ob/me/contract'))).toBe(true)
    expect(routedAsTopic(presence, 'contract', levels('ob/me/contract'))).toBe(false)
    expect(routedAsTopic(contract, 'presence', levels('ob/me/status'))).toBe(false)
  })

  it('lets a device retain only what describes itself: its presence and its contract', () => {
    expect(['presence', 'contract'].filter((k) => describesDevice(k as EnvelopeKind))).toEqual(['presence', 'contract'])
    expect(['command', 'reply', 'event'].some((k) => describesDevice(k as EnvelopeKind))).toBe(false)
  })
})

describe('login throttle', () => {
  it('answers a first failure at once, then waits longer with each failure, up to a bound', () => {
    let now = 0
    const t = createLoginThrottle({ baseMs: 100, maxMs: 1_000, clock: { now: () => now } })
    const waits = Array.from({ length: 8 }, () => t.failed('10.0.0.1'))
    expect(waits).toEqual([0, 100, 200, 400, 800, 1_000, 1_000, 1_000])
    expect(t.failed('10.0.0.2')).toBe(0) // another address has its own count
    now += 1
    expect(t.failed('10.0.0.1')).toBe(1_000)
    for (let i = 0; i < 200; i++) expect(Number.isFinite(t.failed('10.0.0.1'))).toBe(true)
  })

  it('forgets an address that stayed quiet, and remembers a bounded number of addresses', () => {
    let now = 0
    const t = createLoginThrottle({ baseMs: 100, forgetMs: 60_000, maxAddresses: 3, clock: { now: () => now } })
    t.failed('a')
    expect(t.failed('a')).toBe(100)
    now += 60_001
    expect(t.failed('a')).toBe(0)
    for (const addr of ['b', 'c', 'd', 'e']) t.failed(addr)
    expect(t.size()).toBe(3)
    expect(t.failed('a')).toBe(0) // pushed out by newer addresses: starts over
  })

  it('checks logins from addresses with failures one after the other, two such at once in all; fresh ones share their own places; trusted ones go at once', async () => {
    const t = createLoginThrottle({ maxInFlight: 2, freshSlots: 2 })
    t.failed('bad-1')
    t.failed('bad-2')
    t.succeeded('home')
    const order: string[] = []
    const take = (address: string, tag: string): Promise<LoginTurn> => t.turn(address).then((turn) => (order.push(tag), turn))
    // bad-1 and bad-2 take the two places of addresses with failures; bad-1's second check waits for its first answer.
    const [a1, b1] = await Promise.all([take('bad-1', 'a1'), take('bad-2', 'b1')])
    const a2 = take('bad-1', 'a2')
    // Addresses not seen yet share two places of their own; a third waits for one of them.
    const [n1, n2] = await Promise.all([take('new-1', 'n1'), take('new-2', 'n2')])
    const n3 = take('new-3', 'n3')
    // An address a login succeeded from goes at once, whatever waits.
    const [h1, h2] = await Promise.all([take('home', 'h1'), take('home', 'h2')])
    await new Promise((r) => setImmediate(r))
    expect(order).toEqual(['a1', 'b1', 'n1', 'n2', 'h1', 'h2'])
    // b1's hash is done: its place goes on before its refusal is answered; a2 still waits for a1's answer.
    b1.checked()
    a1.checked()
    await new Promise((r) => setImmediate(r))
    expect(order).not.toContain('a2')
    a1.answered()
    ;(await a2).answered()
    expect(order.at(-1)).toBe('a2')
    n1.answered()
    ;(await n3).answered()
    expect(order.at(-1)).toBe('n3')
    for (const turn of [b1, n2, h1, h2]) turn.answered()
    // A success forgets the address's failures: its next check goes at once.
    t.succeeded('bad-2')
    const b2 = await take('bad-2', 'b2')
    expect(order.at(-1)).toBe('b2')
    b2.answered()
  })


})
