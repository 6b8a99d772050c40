import { describe, expect, it } from 'vitest'
import { createDirectory } from '../../runtime/service/directory.js'
import type { PresencePayload } from '../../runtime/index.js'

const online = (...names: string[]): PresencePayload => ({
  online: true,
  services: names.map((name) => ({ name, version: '1', commands: ['go'], events: [] })),
})
const offline: PresencePayload = { online: false, services: [] }

describe('the directory of live services', () => {
  it('ignores the last will of a previous process once the device has announced its new one', () => {
    const dir = createDirectory()
    dir.update('dev-x', 'first', online('echo'))
    dir.update('dev-x', 'second', online('echo'))
    // The will of the killed process arrives late (or is re-sent from the retained store).
    dir.update('dev-x', 'first', offline)
    expect(dir.instances('echo', '1').map((i) => [i.device, i.instance])).toEqual([['dev-x', 'second']])
    dir.update('dev-x', 'second', offline)
    expect(dir.instances('echo', '1')).toEqual([])
  })

  it('remembers the services of a device that went away: known, but not live', () => {
    const dir = createDirectory()
    dir.update('dev-x', 'i1', online('echo'))
    dir.update('dev-x', 'i1', offline)
    expect(dir.pick('echo', '1')).toBeUndefined()
    expect(dir.knows('echo', '1')).toBe(true)
    expect(dir.deviceState('dev-x')).toBe('gone')
    expect(dir.knows('nobody', '1')).toBe(false)
    expect(dir.deviceState('dev-never-seen')).toBe('unknown')
    // An offline presence alone (a retained will of a device never seen online) names no services.
    dir.update('dev-y', 'i9', offline)
    expect(dir.deviceState('dev-y')).toBe('gone')
  })

  it('knows the services an offline presence declares, within the bounds of an online one', () => {
    const refused: string[] = []
    const dir = createDirectory({ maxServicesPerDevice: 2, onRefused: (what, device) => refused.push(`${what}:${device}`) })
    // A process that starts while dev-x is away sees only its retained last will.
    dir.update('dev-x', 'i1', { online: false, services: online('echo', 'counter', 'third').services })
    expect(dir.deviceState('dev-x')).toBe('gone')
    expect(dir.pick('echo', '1')).toBeUndefined()
    expect([dir.knows('echo', '1'), dir.knows('counter', '1'), dir.knows('third', '1')]).toEqual([true, true, false])
    expect(refused).toEqual(['service:dev-x'])
    // An offline presence that names nothing (an older runtime's will) forgets nothing known.
    dir.update('dev-x', 'i2', offline)
    expect(dir.knows('echo', '1')).toBe(true)
    // Back online, then gone again: what it announced is what is remembered.
    dir.update('dev-x', 'i3', online('echo'))
    dir.update('dev-x', 'i3', { online: false, services: online('other').services })
    expect([dir.knows('echo', '1'), dir.knows('counter', '1'), dir.knows('other', '1')]).toEqual([true, false, false])
  })

  it('takes a cleared presence as gone, whichever process announced it, and keeps its services known', () => {
    const dir = createDirectory()
    dir.update('fake', 'f1', online('echo'))
    dir.update('dev-x', 'i1', online('echo'))
    dir.clear('fake')
    expect(dir.instances('echo', '1').map((i) => i.device)).toEqual(['dev-x'])
    expect(dir.deviceState('fake')).toBe('gone')
    dir.clear('never-seen')
    expect(dir.deviceState('never-seen')).toBe('unknown')
    dir.clear('dev-x')
    expect(dir.knows('echo', '1')).toBe(true)
  })

  it('after a reconnect drops the devices that did not announce themselves again, and keeps them known', () => {
    const dir = createDirectory()
    dir.update('dev-x', 'i1', online('echo'))
    dir.update('dev-y', 'i2', online('counter'))
    dir.markStale()
    dir.update('dev-y', 'i2', online('counter'))
    dir.pruneStale()
    expect(dir.instances('echo', '1')).toEqual([])
    expect(dir.instances('counter', '1').map((i) => i.device)).toEqual(['dev-y'])
    expect(dir.knows('echo', '1')).toBe(true)
    expect(dir.deviceState('dev-x')).toBe('gone')
    expect(dir.snapshot().map((d) => d.device)).toEqual(['dev-y'])
  })

  it('wakes a caller waiting for a service or a device when it comes back', async () => {
    const dir = createDirectory()
    dir.update('dev-x', 'i1', online('echo'))
    dir.update('dev-x', 'i1', offline)
    const service = dir.waitFor('echo', '1', 30_000)
    const device = dir.waitForDevice('dev-x', 30_000)
    dir.update('dev-x', 'i2', online('echo'))
    expect((await service)?.instance).toBe('i2')
    expect(await device).toBe(true)
    expect(await dir.waitForDevice('dev-never-seen', 0)).toBe(false)
  })
})

describe('the directory, fed a presence that is not well formed', () => {
  it('skips entries that name no service and keeps the rest', () => {
    const dir = createDirectory()
    const odd = { online: true, services: [null, 7, { name: 'echo', version: '1', commands: 'go' }, { name: 5 }] } as unknown as PresencePayload
    dir.update('dev-x', 'i1', odd)
    expect(dir.instances('echo', '1').map((i) => [i.device, [...i.commands]])).toEqual([['dev-x', []]])
    dir.update('dev-y', 'i1', { online: true } as unknown as PresencePayload)
    expect(dir.deviceState('dev-y')).toBe('live')
  })

  it('holds at most maxNames names in all: the oldest gone devices make room first, then a further device is refused and the known ones keep working', () => {
    const refused: string[] = []
    const dir = createDirectory({ maxNames: 10, onRefused: (what, device) => refused.push(`${what}:${device}`) })
    // Each `online(...)` service is one name and its command another.
    dir.update('a', 'i1', online('s1', 's2', 's3')) // 6
    dir.update('b', 'i1', online('t1', 't2')) // 4: 10 in all
    dir.update('c', 'i1', online('u1'))
    expect(refused).toEqual(['device:c'])
    expect(dir.deviceState('c')).toBe('unknown')
    expect([dir.pick('s1', '1')?.device, dir.pick('t2', '1')?.device]).toEqual(['a', 'b'])
    // b goes: it keeps its 2 services' names while gone (8 in all); c now fits once b's are forgotten.
    dir.update('b', 'i1', offline)
    expect(dir.knows('t1', '1')).toBe(true)
    dir.update('c', 'i1', online('u1', 'u2'))
    expect(dir.deviceState('c')).toBe('live')
    expect([dir.deviceState('b'), dir.knows('t1', '1')]).toEqual(['unknown', false])
    // A known device announced again with no more names than it holds is never refused.
    dir.update('a', 'i2', online('s1', 's2', 's3'))
    expect(dir.pick('s3', '1')?.instance).toBe('i2')
    // Offline presence of made-up devices cannot push the live ones out, only older gone ones.
    for (let i = 0; i < 20; i++) dir.update(`ghost-${i}`, 'g', { online: false, services: online('x').services })
    expect([dir.deviceState('a'), dir.deviceState('c'), dir.deviceState('ghost-0'), dir.deviceState('ghost-19')]).toEqual(['live', 'live', 'unknown', 'unknown'])
  })
})

