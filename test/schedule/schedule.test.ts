import * as v from 'valibot'
import { afterEach, describe, expect, it } from 'vitest'
import {
  createManualClock,
  createMemoryBridge,
  createMemoryHub,
  createMemoryStateStore,
  createRuntime,
  cron,
  defineContract,
  defineService,
  ErrorCode,
  isOutpostError,
  type MisfirePolicy,
  type Runtime,
  type StateStore,
  every,
} from '../../runtime/index.js'

const ticker = defineContract({
  name: 'ticker',
  version: '1',
  events: { tick: v.object({ occurrence: v.string(), at: v.number() }) },
})

const listenerContract = defineContract({ name: 'listener', version: '1' })

function tickerService(kind: 'cron' | 'every' | 'at-every', misfire: MisfirePolicy = 'skip', timezone?: string, pattern = '*/5 * * * * *') {
  return defineService(ticker, {
    commands: {},
    schedules: (s) => ({
      beat:
        kind === 'cron'
          ? s.at(cron(pattern, { timezone }), 'tick', (o) => ({ occurrence: o.id, at: o.at }), { misfire })
          : kind === 'every'
            ? s.every(2_000, 'tick', (o) => ({ occurrence: o.id, at: o.at }), { misfire })
            : s.at(every(2_000), 'tick', (o) => ({ occurrence: o.id, at: o.at }), { misfire }),
    }),
  })
}

const START = Date.UTC(2026, 10, 23, 10, 0, 2) // 10:00:02Z

describe('schedules', () => {
  const runtimes: Runtime[] = []
  afterEach(async () => {
    for (const r of runtimes.splice(0)) await r.stop({ drainMs: 50 })
  })

  async function setup(service: ReturnType<typeof tickerService>, clock = createManualClock(START), store: StateStore = createMemoryStateStore()) {
    const hub = createMemoryHub()
    const heard: { occurrence: string; at: number; corr?: string }[] = []
    const listener = defineService(listenerContract, {
      commands: {},
      subscriptions: (s) => ({ ticks: s.on(ticker, 'tick', (p, ctx) => void heard.push({ ...p, corr: ctx.event.correlationId })) }),
    })
    const other = createRuntime({ bridge: createMemoryBridge({ hub, deviceId: 'listener' }), services: [listener] })
    const device = createRuntime({ bridge: createMemoryBridge({ hub, deviceId: 'clock-dev' }), services: [service], clock, stateStore: store })
    runtimes.push(device, other)
    await other.start()
    await device.start()
    return { clock, store, heard, device }
  }

  it('fires an every(ms) timing given to s.at like s.every', async () => {
    const { clock, heard } = await setup(tickerService('at-every'))
    await clock.advance(7_000)
    expect(heard.map((h) => h.at - START)).toEqual([2_000 - (START % 2_000), 4_000 - (START % 2_000), 6_000 - (START % 2_000)])
  })

  it('fires a cron schedule on time with deterministic occurrence ids', async () => {
    const { clock, heard } = await setup(tickerService('cron'))
    await clock.advance(20_000)
    const base = Date.UTC(2026, 10, 23, 10, 0, 5)
    expect(heard.map((h) => h.at)).toEqual([0, 5_000, 10_000, 15_000].map((d) => base + d))
    expect(heard[0]!.occurrence).toBe(`ticker/beat/${base}`)
    expect(heard[0]!.corr).toBe(`ticker/beat/${base}`) // receivers can dedupe on the envelope too
  })

  it('fires an interval schedule aligned to its period', async () => {
    const { clock, heard } = await setup(tickerService('every'))
    await clock.advance(7_000)
    expect(heard.map((h) => h.at % 2_000)).toEqual([0, 0, 0])
    expect(heard.map((h) => h.at - START)).toEqual([2_000 - (START % 2_000), 4_000 - (START % 2_000), 6_000 - (START % 2_000)])
  })

  it('reads cron patterns in the declared IANA timezone', async () => {
    // 02:30 every day in Berlin is 01:30Z in November (UTC+1).
    const { clock, heard } = await setup(tickerService('cron', 'skip', 'Europe/Berlin', '0 30 2 * * *'))
    await clock.advance(24 * 3_600_000)
    expect(heard.map((h) => new Date(h.at).toISOString())).toEqual(['2026-11-24T01:30:00.000Z'])
  })

  for (const [policy, expected] of [
    ['skip', 0],
    ['runOnce', 1],
    [{ backfill: 3 }, 3],
  ] as [MisfirePolicy, number][]) {
    it(`after the device was off, fires ${expected} missed occurrence(s) under ${JSON.stringify(policy)}`, async () => {
      const store = createMemoryStateStore()
      const first = await setup(tickerService('cron', policy), createManualClock(START), store)
      await first.clock.advance(10_000) // fires 10:00:05 and 10:00:10
      expect(first.heard.length).toBe(2)
      for (const r of runtimes.splice(0)) await r.stop({ drainMs: 50 })

      // Off for a minute: 12 occurrences (10:00:15 … 10:01:10) are missed.
      const later = createManualClock(START + 10_000 + 60_000)
      const second = await setup(tickerService('cron', policy), later, store)
      await later.advance(1) // let start-up work settle, nothing new is due yet
      expect(second.heard.length).toBe(expected)
      const lastMissed = Date.UTC(2026, 10, 23, 10, 1, 10)
      if (expected > 0) expect(second.heard.at(-1)!.at).toBe(lastMissed)
      expect([...second.heard.map((h) => h.at)].sort()).toEqual(second.heard.map((h) => h.at)) // oldest first
      expect(second.device.stats().schedules.skipped).toBe(12 - expected)
      await later.advance(5_000) // and then it goes on as usual
      expect(second.heard.at(-1)!.at).toBe(lastMissed + 5_000)
    })
  }

  it("fires what it missed on the clock's next turn, not inside start(); stopped before that turn, the next start fires them", async () => {
    const store = createMemoryStateStore()
    const first = await setup(tickerService('cron', { backfill: 3 }), createManualClock(START), store)
    await first.clock.advance(10_000) // fires 10:00:05 and 10:00:10
    for (const r of runtimes.splice(0)) await r.stop({ drainMs: 50 })

    // Off for a minute; started, and stopped before the clock moved: nothing fired, nothing counted.
    const second = await setup(tickerService('cron', { backfill: 3 }), createManualClock(START + 70_000), store)
    expect(second.device.stats().schedules).toMatchObject({ fired: 0, skipped: 0 })
    for (const r of runtimes.splice(0)) await r.stop({ drainMs: 50 })
    expect(second.heard).toEqual([])

    // The next start has them all still to catch up on, once its clock turns: the latest three, then on as usual.
    const later = createManualClock(START + 80_000)
    const third = await setup(tickerService('cron', { backfill: 3 }), later, store)
    expect(third.heard).toEqual([])
    await later.advance(1)
    const at = (hh: number, mm: number, ss: number): number => Date.UTC(2026, 10, 23, hh, mm, ss)
    expect(third.heard.map((h) => h.at)).toEqual([at(10, 1, 10), at(10, 1, 15), at(10, 1, 20)])
    expect(third.device.stats().schedules.skipped).toBe(11)
    await later.advance(5_000)
    expect(third.heard.at(-1)!.at).toBe(at(10, 1, 25))
  })

  it('rejects a bad cron pattern, an unknown timezone and an undeclared event at definition', () => {
    const attempt = (fn: () => unknown): unknown => {
      try {
        fn()
      } catch (e) {
        return e
      }
      return undefined
    }
    expect(isOutpostError(attempt(() => tickerService('cron', 'skip', undefined, 'every minute')), ErrorCode.INVALID_CONFIG)).toBe(true)
    expect(isOutpostError(attempt(() => tickerService('cron', 'skip', 'Mars/Base')), ErrorCode.INVALID_CONFIG)).toBe(true)
    expect(
      isOutpostError(
        attempt(() => defineService(ticker, { commands: {}, schedules: (s) => ({ x: s.every(1_000, 'nope' as 'tick', () => ({ occurrence: '', at: 0 })) }) })),
        ErrorCode.INVALID_CONFIG,
      ),
    ).toBe(true)
  })

  it('rejects what is not a timing, and tells a caller of the old s.cron(pattern) what to write instead', () => {
    const thrown = (fn: () => unknown): { code?: string; message?: string } => {
      try {
        fn()
      } catch (e) {
        return e as { code?: string; message?: string }
      }
      throw new Error('nothing thrown')
    }
    const tick = () => ({ occurrence: '', at: 0 })
    // A JavaScript caller (no types) handing a pattern where a timing goes.
    const asString = thrown(() => defineService(ticker, { commands: {}, schedules: (s) => ({ x: s.at('0 * * * *' as never, 'tick', tick) }) }))
    expect(asString.code).toBe(ErrorCode.INVALID_CONFIG)
    expect(asString.message).toContain('s.at(cron("0 * * * *"), …)')
    const old = thrown(() => defineService(ticker, { commands: {}, schedules: (s) => ({ x: (s.cron as unknown as (p: string) => never)('0 * * * *') }) }))
    expect(old.code).toBe(ErrorCode.INVALID_CONFIG)
    expect(old.message).toContain('s.at(cron("0 * * * *", { timezone }), event, payload, { misfire })')
    expect(thrown(() => every(0)).code).toBe(ErrorCode.INVALID_CONFIG)
    expect(thrown(() => every(1.5)).code).toBe(ErrorCode.INVALID_CONFIG)
  })
})
