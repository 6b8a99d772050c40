// The clock port: the manual clock tests and simulations move, and the system clock's timers.
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { transform } from 'esbuild'
import { describe, expect, it } from 'vitest'
import { createManualClock, systemClock, UNREF } from '../../runtime/index.js'

const T0 = Date.UTC(2026, 10, 26, 12, 0, 0)

describe('manual clock', () => {
  it('fires due timers in time order, each at its own time, and none before it is due', async () => {
    const clock = createManualClock(T0)
    const fired: [string, number][] = []
    clock.setTimer(T0 + 30, () => fired.push(['c', clock.now()]))
    clock.setTimer(T0 + 10, () => fired.push(['a', clock.now()]))
    clock.setTimer(T0 + 20, () => fired.push(['b', clock.now()]))
    await clock.advance(9)
    expect(fired).toEqual([])
    await clock.advance(16)
    expect(fired).toEqual([['a', T0 + 10], ['b', T0 + 20]])
    expect(clock.now()).toBe(T0 + 25)
    expect(clock.pending).toBe(1)
    expect(clock.nextAt()).toBe(T0 + 30)
  })

  it('fires, within one advance, the timers that firing timers set when they fall due by then', async () => {
    const clock = createManualClock(T0)
    const ticks: number[] = []
    const tick = (): void => {
      ticks.push(clock.now() - T0)
      clock.setTimer(clock.now() + 1_000, tick)
    }
    clock.setTimer(T0 + 1_000, tick)
    await clock.advance(3_500)
    expect(ticks).toEqual([1_000, 2_000, 3_000])
    expect(clock.nextAt()).toBe(T0 + 4_000)
  })

  it('lets the async work a timer starts settle before the next timer fires', async () => {
    const clock = createManualClock(T0)
    const order: string[] = []
    clock.setTimer(T0 + 1, () => {
      void Promise.resolve()
        .then(() => new Promise((r) => setImmediate(r)))
        .then(() => order.push('first, settled'))
    })
    clock.setTimer(T0 + 2, () => order.push('second'))
    await clock.advance(2)
    expect(order).toEqual(['first, settled', 'second'])
  })

  it('does not fire a cancelled timer; a timer set in the past fires at the next advance', async () => {
    const clock = createManualClock(T0)
    const fired: string[] = []
    const cancel = clock.setTimer(T0 + 5, () => fired.push('cancelled'))
    clock.setTimer(T0 - 1_000, () => fired.push('overdue'))
    cancel()
    expect(clock.pending).toBe(1)
    await clock.advance(0)
    expect(fired).toEqual(['overdue'])
    await clock.advance(60_000)
    expect(fired).toEqual(['overdue'])
    expect(clock.pending).toBe(0)
    expect(clock.nextAt()).toBeUndefined()
  })

  it('moves to the next timer on advanceToNext, and jumps without firing anything', async () => {
    const clock = createManualClock(T0)
    const fired: number[] = []
    clock.setTimer(T0 + 86_400_000, () => fired.push(clock.now()))
    expect(await clock.advanceToNext()).toBe(true)
    expect(fired).toEqual([T0 + 86_400_000])
    expect(await clock.advanceToNext()).toBe(false)
    clock.setTimer(T0 + 2 * 86_400_000, () => fired.push(clock.now()))
    clock.jump(T0 + 3 * 86_400_000)
    expect(fired).toHaveLength(1)
    expect(clock.pending).toBe(1)
    // Its wait is on monotonic time, as a Node timer's: still a day after it was set, wherever the clock was set to.
    expect(clock.nextAt()).toBe(T0 + 4 * 86_400_000)
    await clock.advance(86_400_000 - 1)
    expect(fired).toHaveLength(1)
    await clock.advance(1)
    expect(fired).toEqual([T0 + 86_400_000, T0 + 4 * 86_400_000])
    clock.setTimer(clock.now() + 1_000, () => fired.push(clock.now()))
    clock.jump(clock.now() - 3_600_000)
    expect(await clock.advanceToNext()).toBe(true)
    expect(fired.at(-1)).toBe(T0 + 4 * 86_400_000 - 3_600_000 + 1_000)
  })
})

describe('system clock', () => {
  it('fires a timer at its time and not after it was cancelled', async () => {
    const fired: string[] = []
    const start = Date.now()
    await new Promise<void>((resolve) => {
      systemClock.setTimer(start + 20, () => {
        fired.push('due')
        resolve()
      })
      systemClock.setTimer(start + 10, () => fired.push('cancelled'))()
    })
    expect(Date.now() - start).toBeGreaterThanOrEqual(19)
    expect(fired).toEqual(['due'])
  })

  it('keeps the process alive for a plain timer, not for an unref’d one', () => {
    // A child process whose only work is one timer 300 ms away: the timer fires only if it keeps the process alive.
    const run = (opts: string): { status: number | null; out: string } => {
      const script = `import { systemClock } from './runtime/ports/clock.ts'
systemClock.setTimer(Date.now() + 300, () => console.log('fired'), ${opts})
setTimeout(() => {}, 0)`
      const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: process.cwd(), encoding: 'utf8', timeout: 15_000 })
      return { status: r.status, out: r.stdout.trim() }
    }
    expect(run('{ unref: true }')).toEqual({ status: 0, out: '' })
    expect(run('undefined')).toEqual({ status: 0, out: 'fired' })
    expect(UNREF).toEqual({ unref: true })
  })

  it("reads monotonic time in ms, as performance.now runs, without loading node:perf_hooks (a device's start)", async () => {
    // Compiled to plain JavaScript and run by plain node, so that what is loaded is the clock's doing alone.
    const source = readFileSync(path.join(import.meta.dirname, '..', '..', 'runtime', 'ports', 'clock.ts'), 'utf8')
    const code = (await transform(source, { loader: 'ts', format: 'esm', target: 'node20' })).code
    const script = `${code}
const has = () => process.moduleLoadList.includes('NativeModule perf_hooks')
const before = has()
const m0 = systemClock.monotonic()
const loaded = has()
const p0 = performance.now()
const until = Date.now() + 60
while (Date.now() < until) {}
const dp = performance.now() - p0
const dm = systemClock.monotonic() - m0
// The clock's interval holds performance.now's (read inside it): as long or longer, in ms, not in
// another unit. (Within 5 ms of it, as this said, failed on a busy machine that paused the
// process between two reads.)
console.log(JSON.stringify({ before, loaded, close: dm >= dp - 1 && dm - dp < 1000, dm }))`
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 15_000 })
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { before: boolean; loaded: boolean; close: boolean; dm: number }
    expect(out).toMatchObject({ before: false, loaded: false, close: true })
    expect(out.dm).toBeGreaterThanOrEqual(59)
  })
})
