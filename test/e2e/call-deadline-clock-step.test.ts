// A call's deadline, seen from outside, when the caller's wall clock steps while the call waits.
// The caller is a real device process (test/e2e/chaos/call-clock-device.ts) run with a preload
// that adds to Date the number of ms a file holds, a file this test rewrites mid-call; timers and
// performance.now keep real time, as on a device whose clock an NTP sync or an operator sets. The
// callee is a second device process whose `hang` command never answers (its handler ignores its
// abort signal), so the only thing that can end the call is the caller's own deadline. Both talk
// through a real aedes broker. The caller's waiting must run on real time: a 2 s call times out
// after ~2 s whether the clock went back an hour or forward a day meanwhile.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { MqttBroker } from '../../gateway/broker/mqtt-broker.js'
import { freshAedes } from '../helpers/aedes.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { setClockOffset, writeClockShiftPreload } from '../helpers/clock-shift.js'
import { startProcess, type TestProcess } from '../helpers/device-process.js'
import { buildHelperProcess } from '../helpers/processes.js'
import { until } from '../helpers/wait.js'

const HOUR = 3_600_000
const DAY = 86_400_000
const TIMEOUT_MS = 2_000
/** How long after the call starts the caller's clock is stepped, real ms. */
const STEP_AFTER_MS = 500

/** A line the helper printed (JSON). */
interface Line {
  ev: string
  cmd?: string
  n?: number
  ok?: boolean
  code?: string
  elapsedMs?: number
  wall?: number
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

describe("a call's deadline when the caller's wall clock steps while the call waits", () => {
  let dir: string
  let script: string
  let preload: string
  let broker: MqttBroker
  let callee: TestProcess
  const cleanup = cleanupAfterEach()

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'outpost-call-clock-'))
    preload = writeClockShiftPreload(dir)
    script = await buildHelperProcess('call-clock-device')
    broker = await freshAedes()
    // The callee keeps the right time.
    callee = startProcess(script, [broker.url, 'stall-callee', 'serve'], {})
    await callee.waitFor('"ev":"ready"', 15_000)
  })
  afterAll(async () => {
    await callee?.kill('SIGKILL')
    await broker?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  const parsed = (p: TestProcess): Line[] => p.lines.filter((l) => l.startsWith('{"ev"')).map((l) => JSON.parse(l) as Line)
  const setClock = setClockOffset

  /** A caller process whose Date is offset by what `offsetFile` holds (0 to start with). */
  const caller = async (deviceId: string, offsetFile: string): Promise<TestProcess> => {
    setClock(offsetFile, 0)
    const p = startProcess(script, [broker.url, deviceId, 'call'], { NODE_OPTIONS: `--import=${preload}`, CLOCK_OFFSET_FILE: offsetFile })
    cleanup(() => p.kill('SIGKILL'))
    await p.waitFor('"ev":"ready"', 15_000)
    return p
  }
  const waitLine = async (p: TestProcess, what: string, pick: (l: Line) => boolean, ms: number): Promise<Line> => {
    await until(() => parsed(p).some(pick), ms).catch(() => {
      throw new Error(`${what}: not within ${ms} ms; caller output:\n${p.lines.slice(-30).join('\n')}`)
    })
    return parsed(p).find(pick)!
  }
  /** Tells the caller to call `cmd`; resolves once it says the call started. */
  const start = async (p: TestProcess, cmd: 'hang' | 'ping', n: number): Promise<void> => {
    p.child.stdin!.write(`${cmd} ${n} ${TIMEOUT_MS}\n`)
    await waitLine(p, `call ${n} started`, (l) => l.ev === 'calling' && l.n === n, 5_000)
  }
  /** How call `n` settled; fails when it has not within `ms`. */
  const settled = (p: TestProcess, n: number, ms: number): Promise<Line> => waitLine(p, `call ${n} settled`, (l) => l.ev === 'settled' && l.n === n, ms)
  /** A call to `ping`, which answers: it succeeds well within its deadline. */
  const pingAnswers = async (p: TestProcess, n: number): Promise<void> => {
    await start(p, 'ping', n)
    const r = await settled(p, n, 8_000)
    expect(r, JSON.stringify(r)).toMatchObject({ ok: true })
    expect(r.elapsedMs!).toBeLessThan(1_500)
  }
  /** Starts a `hang` call, steps the caller's clock by `stepMs` STEP_AFTER_MS later, and returns how the call settled. */
  const hangThroughStep = async (p: TestProcess, offsetFile: string, n: number, stepMs: number): Promise<Line> => {
    await start(p, 'hang', n)
    // The command reached the callee, which will never answer it.
    await callee.waitFor(`"ev":"hung","n":${n}`, 1_500)
    await sleep(STEP_AFTER_MS)
    setClock(offsetFile, stepMs)
    // Bounded well below an hour: a call waiting on wall time would still be pending here.
    return settled(p, n, 8_000)
  }

  it('set back an hour mid-call: the call still fails with TIMEOUT at its deadline, not an hour later', async () => {
    const offsetFile = path.join(dir, 'back.offset')
    const p = await caller('caller-back', offsetFile)
    // Finds the callee and shows the link works before the clock moves.
    await pingAnswers(p, 1)

    const r = await hangThroughStep(p, offsetFile, 2, -HOUR)
    expect(r, JSON.stringify(r)).toMatchObject({ ok: false, code: 'TIMEOUT' })
    expect(r.elapsedMs!).toBeGreaterThanOrEqual(1_500)
    expect(r.elapsedMs!).toBeLessThanOrEqual(5_000)
    // The step had taken hold in the caller when the call settled.
    expect(Math.abs(r.wall! - (Date.now() - HOUR))).toBeLessThan(60_000)

    // NTP puts the clock right again (an hour behind, its commands would be dropped by the callee
    // as expired): the caller calls as before.
    setClock(offsetFile, 0)
    await sleep(100)
    await pingAnswers(p, 3)
  }, 20_000)

  it('set forward a day mid-call: the call fails with TIMEOUT at its deadline, not at once', async () => {
    const offsetFile = path.join(dir, 'forward.offset')
    const p = await caller('caller-forward', offsetFile)
    await pingAnswers(p, 1)

    const r = await hangThroughStep(p, offsetFile, 2, DAY)
    expect(r, JSON.stringify(r)).toMatchObject({ ok: false, code: 'TIMEOUT' })
    expect(r.elapsedMs!).toBeGreaterThanOrEqual(1_800)
    expect(r.elapsedMs!).toBeLessThanOrEqual(5_000)
    expect(Math.abs(r.wall! - (Date.now() + DAY))).toBeLessThan(60_000)

    // Still a day ahead, the caller calls as before (its deadlines are a day ahead too, which a
    // callee on the right time accepts).
    await pingAnswers(p, 3)
  }, 20_000)
})
