// `outpost flash` killed with SIGKILL at many moments: after each kill the device's launcher still
// finds a complete, verified slot holding the old bundle or the new one, never neither. Half the
// kills come at a chosen step (OUTPOST_FLASH_STEP_DELAY_MS slows the flash and announces each
// step on stderr), half at a random time while it flashes; at the end the device still runs.
import { spawn } from 'node:child_process'
import { createPrivateKey } from 'node:crypto'
import { existsSync, readdirSync } from 'node:fs'
import path from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { buildDevice, generateSigningKeys, verifyBundle } from '../../build/index.js'
import { flashBundle } from '../../build/flash.js'
import { thermoContract } from '../../devices/contracts/thermo.js'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createRuntime } from '../../runtime/index.js'
import { freshAedes } from '../helpers/aedes.js'
import { CLEAN_GATEWAY_ENV } from '../helpers/gateway-cli.js'
import { tempDirs } from '../build/build-helpers.js'
import { launcherCheck, readJson, startLauncher, variant } from './flash-helpers.js'

const temp = tempDirs('flash-kill')
/** Steps the flash announces, in order (build/flash.ts). */
const STEPS = ['verify', 'prepare', 'copy manifest.json', 'copy manifest.sig', 'copy better_sqlite3.node', 'copy thermo.cjs', 'copy thermo.code.cjs', 'copy thermo.code.cjs.map', 'sync', 'replace', 'verify-slot', 'keys', 'launcher', 'switch', 'switched']
const STEP_DELAY_MS = 20
const KILLS = 2 * STEPS.length

/** Runs `outpost flash` and kills it (SIGKILL) once `when` resolves; @returns whether it had finished by itself first. */
async function flashKilled(bundle: string, dev: string, when: (stderr: () => string, ended: () => boolean) => Promise<void>): Promise<boolean> {
  const child = spawn(process.execPath, ['bin/outpost.js', 'flash', bundle, '--to', dev], {
    env: { ...process.env, ...CLEAN_GATEWAY_ENV, OUTPOST_FLASH_STEP_DELAY_MS: String(STEP_DELAY_MS) },
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let err = ''
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (err += c))
  const exited = new Promise<number | null>((r) => child.once('close', (code) => r(code)))
  let done = false
  void exited.then(() => (done = true))
  await Promise.race([when(() => err, () => done), exited])
  const finished = done
  if (!finished) child.kill('SIGKILL')
  const code = await exited
  if (finished && code !== 0) throw new Error(`outpost flash failed by itself: ${err}`)
  return finished
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

describe('outpost flash killed with SIGKILL at any moment', () => {
  const keys = generateSigningKeys()
  const bundles: string[] = []
  let dev: string

  beforeAll(async () => {
    const built = await buildDevice('thermo', { outDir: temp(), signingKey: createPrivateKey(keys.privatePem), buildTime: '2025-01-01T00:00:00.000Z' })
    bundles.push(built.dir, variant(built.dir, path.join(temp(), 'thermo'), keys.privatePem, { version: '0.2.0', buildTime: '2025-02-01T00:00:00.000Z' }))
    dev = temp()
    await flashBundle(bundles[0]!, { to: dev, key: keys.publicPem })
  }, 30_000)

  it(`leaves the device starting the old bundle or the new one after each of ${KILLS} kills, and flashes cleanly after them`, async () => {
    const buildTimes = ['2025-01-01T00:00:00.000Z', '2025-02-01T00:00:00.000Z']
    let current = (await launcherCheck(dev)).slot!.buildTime
    expect(current).toBe(buildTimes[0])
    // How long flashing takes here, from its first step to its end: the random kills fall within it.
    let t0 = 0
    expect(await flashKilled(bundles[1]!, dev, async (stderr, ended) => {
      while (!ended() && !stderr().includes('flash step: verify\n')) await sleep(2)
      t0 = Date.now()
      await new Promise(() => {})
    })).toBe(true)
    const flashing = Date.now() - t0
    current = (await launcherCheck(dev)).slot!.buildTime
    expect(current).toBe(buildTimes[1])

    const endedOn = { old: 0, new: 0 }
    for (let i = 0; i < KILLS; i++) {
      // Each time the bundle the device does not have now.
      const next = current === buildTimes[0] ? 1 : 0
      const step = i < STEPS.length ? STEPS[i]! : undefined
      const finished = await flashKilled(bundles[next]!, dev, async (stderr, ended) => {
        while (!ended() && !stderr().includes(`flash step: ${step ?? 'verify'}\n`)) await sleep(2)
        await sleep(Math.random() * (step === undefined ? flashing : STEP_DELAY_MS * 1.5))
      })
      const check = await launcherCheck(dev)
      expect(check.code, `kill ${i} (${step ?? 'at random'}): ${check.err}`).toBe(0)
      const slot = check.slot!
      expect([current, buildTimes[next]], `kill ${i} (${step ?? 'at random'})`).toContain(slot.buildTime)
      // The test's own check agrees with the launcher's: that slot verifies in full.
      const manifest = await verifyBundle(path.join(dev, 'slots', slot.slot), keys.publicPem)
      expect(manifest.buildTime).toBe(slot.buildTime)
      if (finished) expect(slot.buildTime).toBe(buildTimes[next])
      endedOn[slot.buildTime === current ? 'old' : 'new']++
      current = slot.buildTime
    }
    // Kills before the switch leave the old bundle, kills after it the new one: both happened.
    expect(endedOn.old).toBeGreaterThan(0)
    expect(endedOn.new).toBeGreaterThan(0)

    // An uninterrupted flash afterwards cleans up what the kills left and switches.
    const next = current === buildTimes[0] ? 1 : 0
    await flashBundle(bundles[next]!, { to: dev })
    expect(readdirSync(path.join(dev, 'slots')).sort()).toEqual(['a', 'b'])
    expect(readdirSync(dev).filter((n) => n.endsWith('.tmp'))).toEqual([])
    expect((await launcherCheck(dev)).slot!.buildTime).toBe(buildTimes[next])
    const pointer = readJson<{ slot: string; previous: string }>(path.join(dev, 'active.json'))
    expect(pointer.previous).toBe(pointer.slot === 'a' ? 'b' : 'a')
    expect(existsSync(path.join(dev, 'launcher.mjs'))).toBe(true)
  }, 80_000)

  it('after all that, the launcher starts the device and it serves a command', async () => {
    const broker = await freshAedes()
    const caller = createRuntime({ bridge: createMqttBridge({ url: broker.url, deviceId: 'kill-caller' }), discoveryWaitMs: 10_000 })
    const l = startLauncher(dev, { OUTPOST_MQTT_URL: broker.url, OUTPOST_DEVICE_ID: 'thermo-kill' })
    try {
      await caller.start({ waitForBroker: true })
      await l.waitFor('"msg":"ready"')
      expect((await caller.client(thermoContract).read({ unit: 'C' }, { timeoutMs: 10_000 })).unit).toBe('C')
      l.child.kill('SIGTERM')
      expect((await l.exited).code).toBe(0)
    } finally {
      await l.kill()
      await caller.stop({ drainMs: 100 })
      await broker.close()
    }
  }, 30_000)
})
