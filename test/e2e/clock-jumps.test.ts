// A device whose wall clock is wrong and jumps, attacked from outside: the device process
// (test/e2e/chaos/clock-device.ts: a schedule, a queue of long jobs, a queue that retries after a
// delay, its events through a SQLite outbox to a real aedes broker) runs with a preload that
// offsets Date by the number of ms in a file this test rewrites while the process runs. Timers
// and performance.now keep real time, as on a device with no battery-backed clock or a dead RTC
// battery; the broker and the subscriber here keep the right time.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Decoder } from 'cbor-x'
import mqtt from 'mqtt'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { MqttBroker } from '../../gateway/broker/mqtt-broker.js'
import { freshAedes } from '../helpers/aedes.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { setClockOffset, writeClockShiftPreload } from '../helpers/clock-shift.js'
import { startProcess, type TestProcess } from '../helpers/device-process.js'
import { buildHelperProcess } from '../helpers/processes.js'
import { freePort, until } from '../helpers/wait.js'

const YEARS_25 = Math.round(25 * 365.25 * 86_400_000)
const HOUR = 3_600_000

/** What the device printed: its own lines (`ev`) and pino's (`level`, `msg`). */
interface Line {
  ev?: string
  q?: string
  n?: number
  attempt?: number
  double?: boolean
  aborted?: boolean
  id?: string
  level?: number
  msg?: string
  stats?: { outbox?: { entries: number } }
  work?: { ready: number; delayed: number; leased: number }
  flaky?: { ready: number; delayed: number; leased: number }
}

describe('a device whose wall clock is wrong and jumps', () => {
  let dir: string
  let script: string
  let preload: string
  let broker: MqttBroker
  let sub: mqtt.MqttClient
  /** Events the broker delivered from the devices: message id and name. */
  const heard: { id: string; name: string }[] = []
  const cleanup = cleanupAfterEach()

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'outpost-clock-'))
    preload = writeClockShiftPreload(dir)
    script = await buildHelperProcess('clock-device')
    broker = await freshAedes()
    sub = await mqtt.connectAsync(broker.url, { clientId: 'clock-listener', clean: false })
    const dec = new Decoder({ useRecords: false, mapsAsObjects: true })
    sub.on('message', (_t, buf) => {
      const a = dec.decode(buf) as unknown[]
      heard.push({ id: a[2] as string, name: a[8] as string })
    })
    await sub.subscribeAsync('ob/+/evt/clockdev/1/+', { qos: 1 })
  })
  afterAll(async () => {
    await sub?.endAsync()
    await broker?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  /** A device process (device id: the database's name) on `db`, its clock offset by what `offsetFile` holds. */
  const device = (db: string, offsetFile: string, url: string): TestProcess => {
    const p = startProcess(script, [db, url], { NODE_OPTIONS: `--import=${preload}`, CLOCK_OFFSET_FILE: offsetFile, TICK_MS: '250', DEVICE_ID: path.basename(db, '.db') })
    cleanup(() => p.kill('SIGKILL'))
    return p
  }
  const setClock = setClockOffset
  const parsed = (p: TestProcess): Line[] => p.lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Line)
  const events = (p: TestProcess, ev: string): Line[] => parsed(p).filter((l) => l.ev === ev)
  const waitUntil = async (p: TestProcess, what: string, check: () => boolean, ms = 15_000): Promise<void> =>
    until(check, ms).catch(() => {
      throw new Error(`${what}: not within ${ms} ms; device output:\n${p.lines.slice(-40).join('\n')}`)
    })
  const ended = (p: TestProcess, q: string, n: number): Line[] => events(p, 'end').filter((l) => l.q === q && l.n === n)
  const ticks = (p: TestProcess): number => events(p, 'tick').length
  /** Lines pino wrote at warn or above. */
  const warnings = (p: TestProcess): Line[] => parsed(p).filter((l) => (l.level ?? 0) >= 40)
  /** Asks the device for its stats and returns them. */
  const stats = async (p: TestProcess): Promise<Line> => {
    const before = events(p, 'stats').length
    p.child.stdin!.write('stats\n')
    await waitUntil(p, 'stats', () => events(p, 'stats').length > before, 5_000)
    return events(p, 'stats').at(-1)!
  }

  it('restarted after a kill -9 with its clock 25 years back: leased, retried and delayed jobs run, the schedule fires, the outbox drains', async () => {
    const db = path.join(dir, 'back.db')
    const clock = path.join(dir, 'back.offset')
    setClock(clock, 0)
    // First run with the right time and no broker: every event waits in the outbox.
    const first = device(db, clock, `mqtt://127.0.0.1:${await freePort()}`)
    await first.waitFor('"ev":"ready"')
    first.child.stdin!.write('work 1 60000\nflaky 2 3000\nwork 3 50 3000\n')
    await waitUntil(first, 'jobs started', () => events(first, 'start').some((l) => l.q === 'work' && l.n === 1) && events(first, 'start').some((l) => l.q === 'flaky' && l.n === 2))
    await waitUntil(first, 'ticks', () => ticks(first) >= 4)
    await first.kill('SIGKILL')
    // Killed with the long job leased, the retry and the delayed job waiting.
    expect(events(first, 'end')).toEqual([])
    const waiting = events(first, 'tick').map((l) => l.id!)

    // The RTC battery died: the device comes back 25 years in the past, now with a broker.
    setClock(clock, -YEARS_25)
    const second = device(db, clock, broker.url)
    await second.waitFor('"ev":"ready"')
    // The job the killed process held is taken again once its lease (1.2 s) runs out, not in 25 years.
    await waitUntil(second, 'leased job taken again', () => ended(second, 'work', 1).length === 1)
    expect(ended(second, 'work', 1)[0]).toMatchObject({ attempt: 2 })
    // The retry (due 3 s after the failure) and the delayed job (3 s) run.
    await waitUntil(second, 'delayed retry ran', () => ended(second, 'flaky', 2).length === 1)
    await waitUntil(second, 'delayed job ran', () => ended(second, 'work', 3).length === 1)
    // The schedule fires at its interval from the time the clock now says.
    await waitUntil(second, 'schedule fires', () => ticks(second) >= 8)
    // The outbox drained: what waited from the first run, and the new events (their ids made
    // 25 years earlier) reached the subscriber through the broker.
    const fresh = events(second, 'tick').map((l) => l.id!)
    await waitUntil(second, 'outbox drained', () => {
      const ids = new Set(heard.map((h) => h.id))
      return waiting.every((id) => ids.has(id)) && fresh.every((id) => ids.has(id))
    })
    // The schedule appends a tick every 250 ms, so one may be on its way when the stats are
    // read: asked again (up to 20 times) until they show a moment with nothing waiting.
    let s = await stats(second)
    for (let i = 0; i < 20 && s.stats?.outbox?.entries !== 0; i++) {
      await new Promise((r) => setTimeout(r, 100))
      s = await stats(second)
    }
    expect(s.work).toMatchObject({ ready: 0, delayed: 0, leased: 0 })
    expect(s.flaky).toMatchObject({ ready: 0, delayed: 0, leased: 0 })
    expect(s.stats?.outbox?.entries).toBe(0)
    // A few lines say the clock was set back; nothing repeats per tick or per job.
    expect(warnings(second).length).toBeLessThanOrEqual(4)
    expect(warnings(second).some((l) => /clock was set back|clock is behind/.test(l.msg ?? ''))).toBe(true)
    await second.kill('SIGKILL')
  }, 60_000)

  it('booted at 1970, its clock jumps to the right time: running jobs are not leased again, the schedule goes on without catching up, and a restart after it starts at once', async () => {
    const db = path.join(dir, 'epoch.db')
    const clock = path.join(dir, 'epoch.offset')
    const at1970 = -Date.now() + 86_400_000 // 1970-01-02
    setClock(clock, at1970)
    const p = device(db, clock, broker.url)
    await p.waitFor('"ev":"ready"')
    p.child.stdin!.write('work 1 3000\nwork 2 3000\n')
    await waitUntil(p, 'jobs started', () => events(p, 'start').length === 2)
    await waitUntil(p, 'ticks before the jump', () => ticks(p) >= 4)
    // NTP syncs: 56 years forward while both jobs run (their leases, 1.2 s, were set in 1970).
    setClock(clock, 0)
    const before = ticks(p)
    await waitUntil(p, 'jobs finished', () => ended(p, 'work', 1).length + ended(p, 'work', 2).length >= 2)
    await waitUntil(p, 'schedule goes on', () => ticks(p) >= before + 4)
    // Each job ran once: not taken again while it ran, not aborted for a lost lease or a timeout.
    expect(events(p, 'start').filter((l) => l.q === 'work')).toEqual([
      expect.objectContaining({ n: 1, attempt: 1, double: false }),
      expect.objectContaining({ n: 2, attempt: 1, double: false }),
    ])
    expect(events(p, 'end').every((l) => l.attempt === 1 && l.aborted === false)).toBe(true)
    // No catch-up of the 56 years of 250 ms slots the jump skipped (billions): a tick at a time.
    expect(ticks(p) - before).toBeLessThan(100)
    expect(warnings(p).length).toBeLessThanOrEqual(4)
    await p.kill('SIGKILL')

    // It runs in 1970 again for a while (the schedule's last slot is stored in 1970), is killed,
    // and starts with the right time: the start does not walk every slot since 1970.
    setClock(clock, at1970)
    const again = device(db, clock, broker.url)
    await again.waitFor('"ev":"ready"')
    await waitUntil(again, 'ticks in 1970', () => ticks(again) >= 2)
    await again.kill('SIGKILL')
    setClock(clock, 0)
    const synced = device(db, clock, broker.url)
    await synced.waitFor('"ev":"ready"', 15_000)
    await waitUntil(synced, 'schedule fires after the restart', () => ticks(synced) >= 4)
    await synced.kill('SIGKILL')
  }, 60_000)

  it('its clock steps back an hour and forward again while jobs run and a retry waits: the schedule keeps its interval, no job runs twice, the retry runs', async () => {
    const db = path.join(dir, 'hour.db')
    const clock = path.join(dir, 'hour.offset')
    setClock(clock, 0)
    const p = device(db, clock, broker.url)
    await p.waitFor('"ev":"ready"')
    p.child.stdin!.write('work 1 4000\nwork 2 4000\nflaky 3 2000\n')
    await waitUntil(p, 'jobs started', () => events(p, 'start').filter((l) => l.q === 'work').length === 2 && events(p, 'start').some((l) => l.q === 'flaky'))
    await waitUntil(p, 'ticks', () => ticks(p) >= 2)

    setClock(clock, -HOUR)
    let before = ticks(p)
    await waitUntil(p, 'schedule goes on after the step back', () => ticks(p) >= before + 4)
    // The retry was due 2 s after its failure, by the clock before the step: it runs, not an hour later.
    await waitUntil(p, 'retry ran', () => ended(p, 'flaky', 3).length === 1)

    setClock(clock, 0)
    before = ticks(p)
    await waitUntil(p, 'schedule goes on after the step forward', () => ticks(p) >= before + 4)
    await waitUntil(p, 'jobs finished', () => ended(p, 'work', 1).length + ended(p, 'work', 2).length >= 2)
    expect(events(p, 'start').filter((l) => l.q === 'work').every((l) => l.attempt === 1 && l.double === false)).toBe(true)
    expect(events(p, 'end').filter((l) => l.q === 'work').every((l) => l.attempt === 1 && l.aborted === false)).toBe(true)
    expect(warnings(p).length).toBeLessThanOrEqual(6)
    await p.kill('SIGKILL')
  }, 60_000)
})
