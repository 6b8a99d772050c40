// The launcher's rollback rule, with real processes: a newly flashed bundle that exits before it
// reports ready (every start of it) or that never reports ready within the deadline is rolled
// back to the previous slot, state.json says why, and the previous bundle serves again; a new
// slot's starts count across launcher restarts (a device that reboots while trying it).
import { createPrivateKey } from 'node:crypto'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildDevice, generateSigningKeys } from '../../build/index.js'
import { flashBundle } from '../../build/flash.js'
import { displayContract } from '../../devices/contracts/display.js'
import type { MqttBroker } from '../../gateway/broker/mqtt-broker.js'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createRuntime, type Runtime } from '../../runtime/index.js'
import { freshAedes } from '../helpers/aedes.js'
import { until } from '../helpers/wait.js'
import type { TestProcess } from '../helpers/device-process.js'
import { outpost } from '../helpers/gateway-cli.js'
import { tempDirs } from '../build/build-helpers.js'
import { fakeBundle, launcherCheck, readJson, startedPid, startLauncher } from './flash-helpers.js'

const temp = tempDirs('flash-rollback')

interface State { outcome: string; slot: string; device?: string; from?: { slot: string; device?: string }; reason?: string }

describe('the launcher rolls a new bundle that never gets ready back to the previous slot', () => {
  const keys = generateSigningKeys()
  let display: string
  let dev: string
  let broker: MqttBroker
  let caller: Runtime
  const launchers: TestProcess[] = []
  const start = (env: Record<string, string> = {}): TestProcess => {
    const l = startLauncher(dev, { OUTPOST_MQTT_URL: broker.url, OUTPOST_DEVICE_ID: 'display-flash', OUTPOST_LAUNCHER_TRIES: '2', OUTPOST_LAUNCHER_RESTART_MS: '100', ...env })
    launchers.push(l)
    return l
  }
  const stop = async (l: TestProcess): Promise<void> => {
    l.child.kill('SIGTERM')
    expect((await l.exited).code).toBe(0)
  }
  const state = (): State => readJson<State>(path.join(dev, 'state.json'))
  const show = (text: string): Promise<{ shown: boolean }> => caller.client(displayContract).show({ text }, { timeoutMs: 10_000 })

  beforeAll(async () => {
    display = (await buildDevice('display', { outDir: temp(), signingKey: createPrivateKey(keys.privatePem), buildTime: '2025-01-01T00:00:00.000Z' })).dir
    dev = temp()
    broker = await freshAedes()
    caller = createRuntime({ bridge: createMqttBridge({ url: broker.url, deviceId: 'rollback-caller' }), discoveryWaitMs: 10_000 })
    await caller.start({ waitForBroker: true })
    // A device running the display, kept (it reported ready).
    await flashBundle(display, { to: dev, key: keys.publicPem })
    const l = start()
    await l.waitFor('is ready: kept')
    await stop(l)
  }, 60_000)

  afterAll(async () => {
    for (const l of launchers) await l.kill()
    await caller?.stop({ drainMs: 100 })
    await broker?.close()
  })

  it('a second launcher on the same device folder refuses at once (exit 1, one line) and changes nothing; the first goes on serving', async () => {
    const first = start()
    await first.waitFor('"msg":"ready"')
    const pointer = readFileSync(path.join(dev, 'active.json'), 'utf8')
    const before = JSON.stringify(state())
    const second = start()
    expect((await second.exited).code).toBe(1)
    expect(second.lines.join('\n')).toMatch(/another launcher runs this device \(pid \d+\); nothing was started or changed/)
    expect(startedPid(second.lines)).toBeUndefined()
    expect(readFileSync(path.join(dev, 'active.json'), 'utf8')).toBe(pointer)
    expect(JSON.stringify(state())).toBe(before)
    expect((await show('still here')).shown).toBe(true)
    await stop(first)
    // Its lock went with it: a launcher starts again.
    const again = start()
    await again.waitFor('"msg":"ready"')
    await stop(again)
  }, 60_000)

  it('a bundle that exits at every start: started OUTPOST_LAUNCHER_TRIES times, rolled back with the reason, the display serves again', async () => {
    const broken = await fakeBundle(path.join(temp(), 'broken'), "console.error('broken on purpose: no sensor'); process.exit(3)\n", keys.privatePem)
    expect((await flashBundle(broken, { to: dev, changeDevice: true })).slot).toBe('b')
    const l = start()
    await l.waitFor('rolled back from slot b to slot a')
    await l.waitFor('"msg":"ready"')
    expect(await show('after a rollback')).toEqual({ shown: true, lines: 1 })
    expect(l.lines.filter((x) => x.includes('started slot b: broken 0.0.1'))).toHaveLength(2)
    expect(l.lines.some((x) => x.includes('slot b exited with code 3: broken on purpose: no sensor before it was ready; starting it again (start 1 of 2)'))).toBe(true)
    expect(state()).toMatchObject({
      outcome: 'rolled-back', slot: 'a', device: 'display', from: { slot: 'b', device: 'broken' },
      reason: 'slot b exited with code 3: broken on purpose: no sensor before it was ready, 2 starts in a row',
    })
    expect(readJson(path.join(dev, 'active.json'))).toMatchObject({ slot: 'a', previous: null, confirmed: true })
    const status = await outpost(['flash', 'status', '--to', dev])
    expect(status.out).toMatch(/last: +rolled back at .* from slot b \(built 2025-03-01T00:00:00\.000Z\) to slot a: slot b exited with code 3/)
    expect(status.out).toContain('previous: none (nothing to roll back to)')
    await stop(l)
  }, 30_000)

  it("a bundle whose fatal JSON line starts with its code (as the demo devices' do) gives a reason with the code once", async () => {
    const fatal = JSON.stringify({ level: 60, code: 'STORE_READ_ONLY', msg: 'STORE_READ_ONLY: the data folder cannot be written' })
    const readOnly = await fakeBundle(path.join(temp(), 'read-only'), `console.log(${JSON.stringify(fatal)}); process.exit(1)\n`, keys.privatePem, 'read-only')
    expect((await flashBundle(readOnly, { to: dev, changeDevice: true })).slot).toBe('b')
    const l = start()
    await l.waitFor('rolled back from slot b to slot a')
    expect(state()).toMatchObject({
      outcome: 'rolled-back', slot: 'a', from: { slot: 'b', device: 'read-only' },
      reason: 'slot b exited with code 1: STORE_READ_ONLY: the data folder cannot be written before it was ready, 2 starts in a row',
    })
    await stop(l)
  }, 30_000)

  it('a bundle that crashes just after reporting ready: within its probation, so rolled back like one that never is ready', async () => {
    const flaky = await fakeBundle(path.join(temp(), 'flaky'), "console.log('{\"level\":30,\"msg\":\"ready\"}')\nsetTimeout(() => { throw new Error('sensor lost after start') }, 200)\nsetInterval(() => {}, 1000)\n", keys.privatePem, 'flaky')
    expect((await flashBundle(flaky, { to: dev, changeDevice: true })).slot).toBe('b')
    const l = start()
    await l.waitFor('rolled back from slot b to slot a')
    await until(() => l.lines.some((x) => x.includes('"device":"display-flash"') && x.includes('"msg":"ready"')), 20_000)
    expect(await show('after a crash past ready')).toMatchObject({ shown: true })
    expect(l.lines.some((x) => x.includes('slot b reported ready; it is kept once it has run 1000 ms more'))).toBe(true)
    expect(l.lines.some((x) => x.includes('slot b is ready: kept'))).toBe(false)
    // The reason is the error's own line, not Node's version line that ends its report.
    expect(state()).toMatchObject({
      outcome: 'rolled-back', slot: 'a', from: { slot: 'b', device: 'flaky' },
      reason: 'slot b exited with code 1: Error: sensor lost after start within 1000 ms of reporting ready, 2 starts in a row',
    })
    await stop(l)
  }, 30_000)

  it('a bundle that runs but never reports ready: stopped at the deadline and rolled back', async () => {
    const silent = await fakeBundle(path.join(temp(), 'silent'), "console.log('{\"level\":30,\"msg\":\"warming up\"}')\nsetInterval(() => {}, 1000)\n", keys.privatePem, 'silent')
    expect((await flashBundle(silent, { to: dev, changeDevice: true })).slot).toBe('b')
    const l = start({ OUTPOST_LAUNCHER_READY_MS: '1500' })
    await l.waitFor('rolled back from slot b to slot a')
    await l.waitFor('"msg":"ready"')
    expect(await show('after the deadline')).toMatchObject({ shown: true })
    expect(l.lines.some((x) => x.includes('"msg":"warming up"'))).toBe(true)
    expect(state()).toMatchObject({ outcome: 'rolled-back', slot: 'a', from: { slot: 'b', device: 'silent' }, reason: 'slot b did not report ready within 1500 ms' })
    await stop(l)
  }, 30_000)

  it('a new slot\'s starts count across launcher restarts (a device losing power while trying it): used up, the next start goes back, and --check says so first', async () => {
    const hangs = await fakeBundle(path.join(temp(), 'hangs'), 'setInterval(() => {}, 1000)\n', keys.privatePem, 'hangs')
    await flashBundle(hangs, { to: dev, changeDevice: true })
    for (const n of [1, 2]) {
      const l = start()
      await l.waitFor(`started slot b: hangs 0.0.1, built 2025-03-01T00:00:00.000Z (new: start ${n} of 2`)
      const child = startedPid(l.lines)!
      await l.kill('SIGKILL')
      process.kill(child, 'SIGKILL')
    }
    expect(readJson(path.join(dev, 'active.json'))).toMatchObject({ slot: 'b', previous: 'a', confirmed: false, starts: 2 })
    const check = await launcherCheck(dev, { OUTPOST_LAUNCHER_TRIES: '2' })
    expect(check.code).toBe(0)
    expect(check.slot).toMatchObject({ slot: 'a', trial: false, rollback: { from: 'b', reason: 'slot b was started 2 times since the switch and never reported ready' } })
    const l = start()
    await l.waitFor('"msg":"ready"')
    expect(l.lines.some((x) => x.includes('started slot b'))).toBe(false)
    expect(state()).toMatchObject({ outcome: 'rolled-back', slot: 'a', from: { slot: 'b', device: 'hangs' }, reason: 'slot b was started 2 times since the switch and never reported ready' })
    expect(await show('after two power cuts')).toMatchObject({ shown: true })
    await stop(l)
  }, 30_000)
})
