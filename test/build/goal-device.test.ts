// The device issue 15's size goal names (the MQTT bridge, the SQLite stores, pino and one service)
// is built under the default budget, 300 KB minified and 100 KB gzip, and the bundle it makes runs
// where no node_modules is: started alone, it serves its command to a caller over a real broker.
// The device is the thermo without over-the-air flashing (test/helpers/goal-device.ts).
import { cpSync } from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildDevice, DEFAULT_BUDGET, type BuiltDevice } from '../../build/index.js'
import { thermoContract } from '../../devices/contracts/thermo.js'
import type { MqttBroker } from '../../gateway/broker/mqtt-broker.js'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createRuntime, type Runtime } from '../../runtime/index.js'
import { freshAedes } from '../helpers/aedes.js'
import { startProcess, type TestProcess } from '../helpers/device-process.js'
import { writeGoalDeviceProject } from '../helpers/goal-device.js'
import { bareEnv, nodeModulesAbove, tempDirs } from './build-helpers.js'

const temp = tempDirs('goal-device')

describe('the device of the size goal: MQTT bridge, SQLite stores, pino, one service', () => {
  let built: BuiltDevice
  let home: string
  let broker: MqttBroker
  let caller: Runtime
  const running: TestProcess[] = []

  beforeAll(async () => {
    // A project with the goal device and no build/budgets.json: the default budget holds.
    const root = temp()
    writeGoalDeviceProject(root)
    built = await buildDevice('goal', { root, outDir: temp(), unsigned: true })
    home = temp()
    cpSync(built.dir, path.join(home, 'goal'), { recursive: true })
    broker = await freshAedes()
    caller = createRuntime({ bridge: createMqttBridge({ url: broker.url, deviceId: 'goal-caller' }), discoveryWaitMs: 10_000 })
    await caller.start({ waitForBroker: true })
  }, 90_000)

  afterAll(async () => {
    for (const p of running) await p.kill()
    await caller?.stop({ drainMs: 100 })
    await broker?.close()
  })

  it('is within 300 KB minified and 100 KB gzip (the default budget, which the build checked)', () => {
    expect(DEFAULT_BUDGET).toEqual({ minifiedKb: 300, gzipKb: 100 })
    expect(built.budget).toEqual(DEFAULT_BUDGET)
    expect(built.bytes).toBeLessThanOrEqual(300 * 1024)
    expect(built.gzipBytes).toBeLessThanOrEqual(100 * 1024)
    // What the goal names is in it: the SQLite addon beside it, pino, MQTT.js.
    expect(built.manifest.files.map((f) => f.path)).toContain('better_sqlite3.node')
    const packages = built.breakdown.map((s) => s.name)
    for (const p of ['mqtt', 'better-sqlite3', 'pino', 'cbor-x', 'valibot']) expect(packages).toContain(p)
  })

  it('runs without node_modules: ready, serves its command, stops cleanly', async () => {
    expect(nodeModulesAbove(home)).toEqual([])
    const device = startProcess(path.join(home, 'goal', 'goal.cjs'), [], bareEnv({ OUTPOST_MQTT_URL: broker.url, OUTPOST_DATA_DIR: path.join(home, 'data'), OUTPOST_DEVICE_ID: 'goal-1', OUTPOST_LOG_FORMAT: 'json' }))
    running.push(device)
    await device.waitFor('"msg":"ready"')
    const reading = await caller.client(thermoContract).read({ unit: 'C' }, { timeoutMs: 10_000 })
    expect(reading.unit).toBe('C')
    expect(Number.isFinite(reading.value)).toBe(true)
    device.child.kill('SIGTERM')
    expect((await device.exited).code).toBe(0)
  }, 30_000)
})
