// `outpost flash` onto a device folder outside the repository (no node_modules above it), run by
// the device's own launcher (`node <dev>/launcher.mjs`) against an aedes broker: the bundle serves
// a command; bundles that are not signed right, not the files signed, signed by a key the device
// does not trust or built for a Node it lacks are refused and change nothing while the device goes
// on serving; a second bundle goes into the other slot and runs at the launcher's next start.
import { cpSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { createPrivateKey } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildDevice, generateSigningKeys, MANIFEST_FILE } from '../../build/index.js'
import { thermoContract } from '../../devices/contracts/thermo.js'
import type { MqttBroker } from '../../gateway/broker/mqtt-broker.js'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createRuntime, type Runtime } from '../../runtime/index.js'
import { freshAedes } from '../helpers/aedes.js'
import type { TestProcess } from '../helpers/device-process.js'
import { outpost } from '../helpers/gateway-cli.js'
import { until } from '../helpers/wait.js'
import { nodeModulesAbove, tempDirs } from '../build/build-helpers.js'
import { readJson, snapshot, startedPid, startLauncher, variant } from './flash-helpers.js'

const temp = tempDirs('flash')

describe('outpost flash to a device folder, run by the launcher', () => {
  const keys = generateSigningKeys()
  const other = generateSigningKeys()
  let v1: string
  let v2: string
  let dev: string
  let pub: string
  let broker: MqttBroker
  let caller: Runtime
  let launcher: TestProcess | undefined
  const launchers: TestProcess[] = []
  const start = (env: Record<string, string> = {}): TestProcess => {
    launcher = startLauncher(dev, { OUTPOST_MQTT_URL: broker.url, OUTPOST_DEVICE_ID: 'thermo-flash', ...env })
    launchers.push(launcher)
    return launcher
  }
  const read = (): Promise<{ unit: string; value: number }> => caller.client(thermoContract).read({ unit: 'C' }, { timeoutMs: 10_000 })

  beforeAll(async () => {
    v1 = (await buildDevice('thermo', { outDir: temp(), signingKey: createPrivateKey(keys.privatePem), buildTime: '2025-01-01T00:00:00.000Z' })).dir
    v2 = variant(v1, path.join(temp(), 'thermo'), keys.privatePem, { version: '0.2.0', buildTime: '2025-02-01T00:00:00.000Z' })
    dev = temp()
    pub = path.join(temp(), 'signing-key.pub.pem')
    writeFileSync(pub, keys.publicPem)
    broker = await freshAedes()
    caller = createRuntime({ bridge: createMqttBridge({ url: broker.url, deviceId: 'flash-caller' }), discoveryWaitMs: 10_000 })
    await caller.start({ waitForBroker: true })
  }, 60_000)

  afterAll(async () => {
    for (const l of launchers) await l.kill()
    await caller?.stop({ drainMs: 100 })
    await broker?.close()
  })

  it('flashes a verified bundle into slot a, trusting --key; the launcher starts it, it serves a command and is kept', async () => {
    const r = await outpost(['flash', v1, '--to', dev, '--key', pub])
    expect(r.err).toBe('')
    expect(r.code).toBe(0)
    expect(r.out).toContain(`verified thermo 0.1.0 (built 2025-01-01T00:00:00.000Z): signed by key ${keys.keyId}`)
    expect(r.out).toContain(`trusted key ${keys.keyId} added`)
    expect(r.out).toContain('flashed into slot a, now active; no previous slot (first flash)')
    expect(readdirSync(dev).sort()).toEqual(['active.json', 'keys', 'launcher.mjs', 'slots'])
    expect(readdirSync(path.join(dev, 'slots'))).toEqual(['a'])
    expect(readJson(path.join(dev, 'active.json'))).toMatchObject({ slot: 'a', previous: null, confirmed: false, starts: 0 })
    expect(nodeModulesAbove(dev)).toEqual([])

    const l = start()
    await l.waitFor('"msg":"ready"')
    expect((await read()).unit).toBe('C')
    await until(() => existsSync(path.join(dev, 'state.json')), 10_000)
    expect(readJson(path.join(dev, 'state.json'))).toMatchObject({ outcome: 'success', slot: 'a', device: 'thermo', version: '0.1.0' })
    expect(readJson(path.join(dev, 'active.json'))).toMatchObject({ slot: 'a', previous: null, confirmed: true, starts: 0 })
    expect(readJson(path.join(dev, 'device.json'))).toEqual({ node: { version: process.versions.node, abi: Number(process.versions.modules) }, platform: process.platform, arch: process.arch })
    expect(existsSync(path.join(dev, 'data', 'thermo-flash.db'))).toBe(true)
    expect(l.lines.join('\n')).not.toMatch(/ERR_MODULE_NOT_FOUND|Cannot find module/)
  }, 30_000)

  it('refuses a bad signature, a changed file, an unknown key and a Node the device lacks: one line each, the device unchanged and still serving', async () => {
    const before = snapshot(dev)
    const badSig = path.join(temp(), 'thermo')
    cpSync(v1, badSig, { recursive: true })
    writeFileSync(path.join(badSig, MANIFEST_FILE), readFileSync(path.join(badSig, MANIFEST_FILE), 'utf8').replace('"version": "0.1.0"', '"version": "0.1.9"'))
    const badHash = path.join(temp(), 'thermo')
    cpSync(v1, badHash, { recursive: true })
    const js = readFileSync(path.join(badHash, 'thermo.cjs'))
    js[1000] = js[1000]! ^ 0x20
    writeFileSync(path.join(badHash, 'thermo.cjs'), js)
    const otherKey = variant(v1, path.join(temp(), 'thermo'), other.privatePem, {})

    const cases: [string, string, RegExp][] = [
      [badSig, 'BAD_SIGNATURE', /the signature of manifest\.json .* does not verify with key/],
      [badHash, 'HASH_MISMATCH', /thermo\.cjs in .* is not the file the manifest lists/],
      [otherKey, 'UNKNOWN_KEY', new RegExp(`signed by key ${other.keyId}, which is not trusted here \\(trusted: ${keys.keyId}\\)`)],
    ]
    for (const [bundle, code, message] of cases) {
      const r = await outpost(['flash', bundle, '--to', dev])
      expect(r.code, code).toBe(1)
      expect(r.err).toMatch(new RegExp(`^outpost: ${code}: .*${message.source}.*; nothing was written to ${dev}\\n$`))
      expect(r.out).toBe('')
    }
    // The device's Node, as its launcher recorded it, is not the one the addon is for.
    const deviceJson = path.join(dev, 'device.json')
    const recorded = readFileSync(deviceJson)
    const abi = Number(process.versions.modules) + 12
    writeFileSync(deviceJson, JSON.stringify({ node: { version: '22.0.0', abi }, platform: process.platform, arch: process.arch }))
    try {
      // The running device writes its database meanwhile: everything but data/ must stay as it was.
      const outsideData = (files: string[]): string[] => files.filter((f) => !f.startsWith('data/'))
      const newer = outsideData(snapshot(dev))
      const r = await outpost(['flash', v2, '--to', dev])
      expect(r.code).toBe(1)
      expect(r.err).toMatch(new RegExp(`^outpost: ABI_MISMATCH: the bundle's addon is built for Node ABI ${abi - 12} .* this target is ABI ${abi} .*\\(the device's Node, from device\\.json\\); nothing was written`))
      expect(r.err.trim().split('\n')).toHaveLength(1)
      expect(outsideData(snapshot(dev))).toEqual(newer)
    } finally {
      writeFileSync(deviceJson, recorded)
    }

    expect(snapshot(dev).filter((f) => !f.startsWith('device.json') && !f.startsWith('data/'))).toEqual(before.filter((f) => !f.startsWith('device.json') && !f.startsWith('data/')))
    expect(launcher!.child.exitCode).toBeNull()
    expect((await read()).unit).toBe('C')
  }, 30_000)

  it('a device that trusts no key refuses every bundle and stays empty', async () => {
    const empty = temp()
    const r = await outpost(['flash', v1, '--to', empty])
    expect(r.code).toBe(1)
    expect(r.err).toMatch(/^outpost: UNKNOWN_KEY: the device at .* trusts no key .* give --key <public\.pem> to provision it .*; nothing was written\n$/)
    expect(readdirSync(empty)).toEqual([])
  })

  it('a second bundle goes into slot b while the device runs slot a; the launcher takes it at its next start; status shows both', async () => {
    const r = await outpost(['flash', v2, '--to', dev])
    expect(r.err).toBe('')
    expect(r.out).toContain('flashed into slot b, now active; slot a kept for rollback')
    expect(r.out).not.toContain('trusted key')
    const status = await outpost(['flash', 'status', '--to', dev])
    expect(status.code).toBe(0)
    expect(status.out).toMatch(/active: +slot b: thermo 0\.2\.0, built 2025-02-01T00:00:00\.000Z; new: not kept yet \(the launcher keeps it once it has reported ready and run its probation, 10 s by default\), started 0 times since the switch/)
    expect(status.out).toMatch(/previous: slot a: thermo 0\.1\.0, built 2025-01-01T00:00:00\.000Z \(kept for rollback\)/)
    expect(status.out).toMatch(/last: +success at .*: slot a \(thermo 0\.1\.0, built 2025-01-01T00:00:00\.000Z\) reported ready/)
    expect(status.out).toContain(`keys:     ${keys.keyId}`)
    expect(status.out).toMatch(/node: .*as the launcher last saw it/)

    // Still the old bundle until the launcher starts again.
    expect(launcher!.child.exitCode).toBeNull()
    expect((await read()).unit).toBe('C')
    const old = launcher!
    old.child.kill('SIGTERM')
    expect((await old.exited).code).toBe(0)
    expect(old.lines.some((l) => l.includes('"device":"launcher"') && l.includes('"msg":"stopped"'))).toBe(true)

    // Logging warnings only, the device's `ready` line is not written: it says so over IPC as well.
    const l = start({ OUTPOST_LOG_LEVEL: 'warn' })
    await l.waitFor('started slot b: thermo 0.2.0, built 2025-02-01T00:00:00.000Z (new: start 1 of 3')
    await l.waitFor('slot b is ready: kept')
    expect(l.lines.some((x) => x.includes('"device":"thermo-flash"') && x.includes('"msg":"ready"'))).toBe(false)
    expect((await read()).unit).toBe('C')
    await until(() => readJson<{ slot: string }>(path.join(dev, 'state.json')).slot === 'b', 10_000)
    expect(readJson(path.join(dev, 'state.json'))).toMatchObject({ outcome: 'success', slot: 'b', version: '0.2.0' })
    expect(readJson(path.join(dev, 'active.json'))).toMatchObject({ slot: 'b', previous: 'a', confirmed: true })
    const json = JSON.parse((await outpost(['flash', 'status', '--to', dev, '--json'])).out) as { active: { slot: string; version: string; problem?: string }; previous: { slot: string } }
    expect(json.active).toEqual({ slot: 'b', device: 'thermo', version: '0.2.0', buildTime: '2025-02-01T00:00:00.000Z' })
    expect(json.previous).toMatchObject({ slot: 'a', version: '0.1.0' })
  }, 40_000)

  it('a kept slot that crashes later is restarted, not rolled back', async () => {
    const l = launcher!
    const pid = startedPid(l.lines)!
    process.kill(pid, 'SIGKILL')
    await until(() => startedPid(l.lines, 2) !== undefined, 15_000)
    expect(l.lines.some((x) => /slot b was ended by SIGKILL; restarting it in \d+ ms/.test(x))).toBe(true)
    expect(startedPid(l.lines, 2)).not.toBe(pid)
    expect(l.lines.filter((x) => x.includes('started slot')).every((x) => x.includes('started slot b'))).toBe(true)
    expect(readJson(path.join(dev, 'active.json'))).toMatchObject({ slot: 'b', previous: 'a', confirmed: true })
    expect((await read()).unit).toBe('C')
    l.child.kill('SIGTERM')
    expect((await l.exited).code).toBe(0)
  }, 40_000)
})
