// The demo devices' bundles, copied to a temp folder with no node_modules anywhere above it and
// run as `node <dir>/<device>.mjs` against a real aedes broker: they start, report ready, serve a
// command and stop cleanly. The thermo's SQLite addon is loaded from beside its bundle; the
// modules the bundle leaves out (build/device-stubs.ts) are not in it.
import { cpSync, existsSync, mkdirSync, rmSync, statSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildDevice, DEVICE_STUBS, generateSigningKeys, verifyBundle, type BuiltDevice } from '../../build/index.js'
import { bundleDevice } from '../../build/bundle.js'
import { PROJECT_ROOT } from '../../build/project-root.js'
import { createPrivateKey } from 'node:crypto'
import { displayContract } from '../../devices/contracts/display.js'
import { thermoContract } from '../../devices/contracts/thermo.js'
import type { MqttBroker } from '../../gateway/broker/mqtt-broker.js'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createRuntime, type Runtime } from '../../runtime/index.js'
import mqtt from 'mqtt'
import { createThermoService } from '../../devices/thermo/thermo-service.js'
import { buildContractDocument } from '../../runtime/service/contract-document.js'
import { createEnvelopeCodec } from '../../runtime/wire/codec.js'
import { freshAedes } from '../helpers/aedes.js'
import { startProcess, type TestProcess } from '../helpers/device-process.js'
import { bareEnv, nodeModulesAbove, tempDirs } from './build-helpers.js'
import { until } from '../helpers/wait.js'

const temp = tempDirs('bundle-run')

describe('a device bundle copied out of the repository', () => {
  const keys = generateSigningKeys()
  let broker: MqttBroker
  let caller: Runtime
  let home: string
  const built = new Map<string, BuiltDevice>()
  const running: TestProcess[] = []

  beforeAll(async () => {
    const out = temp()
    for (const name of ['thermo', 'display']) {
      built.set(name, await buildDevice(name, { outDir: out, signingKey: createPrivateKey(keys.privatePem), buildTime: '2025-01-01T00:00:00.000Z' }))
    }
    // Somewhere a package could not come from: the bundle has everything, or it fails here.
    home = temp()
    for (const name of built.keys()) cpSync(path.join(out, name), path.join(home, name), { recursive: true })
    broker = await freshAedes()
    caller = createRuntime({ bridge: createMqttBridge({ url: broker.url, deviceId: 'bundle-caller' }), discoveryWaitMs: 10_000 })
    await caller.start({ waitForBroker: true })
  }, 60_000)

  afterAll(async () => {
    for (const p of running) await p.kill()
    await caller?.stop({ drainMs: 100 })
    await broker?.close()
  })

  const start = (name: string, env: Record<string, string> = {}): TestProcess => {
    const p = startProcess(path.join(home, name, `${name}.cjs`), [], bareEnv({ OUTPOST_MQTT_URL: broker.url, OUTPOST_DATA_DIR: path.join(home, 'data'), OUTPOST_LOG_FORMAT: 'json', ...env }))
    running.push(p)
    return p
  }

  it('has no node_modules to fall back on, and verifies where it was copied', async () => {
    expect(nodeModulesAbove(home)).toEqual([])
    for (const name of built.keys()) {
      const manifest = await verifyBundle(path.join(home, name), keys.publicPem)
      expect(manifest.device).toBe(name)
    }
  })

  it('thermo: starts on the addon beside it, reports ready, serves a command, keeps its database, stops cleanly', async () => {
    const device = start('thermo', { OUTPOST_DEVICE_ID: 'thermo-bundle' })
    const ready = JSON.parse(await device.waitFor('"msg":"ready"')) as { device: string }
    expect(ready.device).toBe('thermo-bundle')
    const reading = await caller.client(thermoContract).read({ unit: 'F' }, { timeoutMs: 10_000 })
    expect(reading.unit).toBe('F')
    expect(Number.isFinite(reading.value)).toBe(true)
    expect(existsSync(path.join(home, 'data', 'thermo-bundle.db'))).toBe(true)
    expect(device.lines.join('\n')).not.toMatch(/ERR_MODULE_NOT_FOUND|Cannot find module|Dynamic require/)
    device.child.kill('SIGTERM')
    expect((await device.exited).code).toBe(0)
  })

  it('thermo announces the contract document its sources make, though the bundle has no converter (the build made it)', async () => {
    const device = start('thermo', { OUTPOST_DEVICE_ID: 'thermo-contract' })
    await device.waitFor('"msg":"ready"')
    const client = await mqtt.connectAsync(broker.url, { clientId: 'contract-reader' })
    try {
      const frame = new Promise<Buffer>((resolve) => client.on('message', (_t, payload) => payload.length > 0 && resolve(payload)))
      await client.subscribeAsync('ob/thermo-contract/contract', { qos: 1 })
      const decoded = createEnvelopeCodec().decode(await frame)
      expect(decoded.ok).toBe(true)
      // From the sources, with the converter: what the device would announce run with tsx.
      const fromSources = await buildContractDocument([createThermoService({ deviceId: 'thermo-contract', sampleMs: 1_000 })], undefined)
      expect(fromSources?.unknown).toEqual([])
      expect(decoded.ok && decoded.envelope.payload).toEqual(fromSources!.document)
      expect((fromSources!.document.services[0]!.commands.read!.payload as { type?: string }).type).toBe('object')
    } finally {
      await client.endAsync()
    }
    expect(device.lines.join('\n')).not.toContain('announced with open schemas')
    device.child.kill('SIGTERM')
    expect((await device.exited).code).toBe(0)
  })

  it('a contract its build did not see (defined in the entry file) is announced with open schemas, with one warning; one it saw, with its schemas', async () => {
    const root = temp()
    mkdirSync(path.join(root, 'devices', 'lamp'), { recursive: true })
    mkdirSync(path.join(root, 'build'))
    for (const dir of ['runtime', 'node_modules', 'build/stubs']) symlinkSync(path.join(PROJECT_ROOT, dir), path.join(root, dir), 'dir')
    writeFileSync(path.join(root, 'devices', 'lamp', 'contract.ts'), [
      "import * as v from 'valibot'",
      "import { defineContract } from '../../runtime/index.js'",
      "export const seen = defineContract({ name: 'seen', version: '1', commands: { set: { payload: v.object({ on: v.boolean() }), result: v.object({ on: v.boolean() }) } } })",
    ].join('\n'))
    writeFileSync(path.join(root, 'devices', 'lamp', 'main.ts'), [
      "import * as v from 'valibot'",
      "import { pino } from 'pino'",
      "import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'",
      "import { createRuntime, defineContract, defineService } from '../../runtime/index.js'",
      "import { seen } from './contract.js'",
      "const unseen = defineContract({ name: 'unseen', version: '1', commands: { ping: { payload: v.object({ n: v.number() }), result: v.object({ n: v.number() }) } } })",
      "const rt = createRuntime({ bridge: createMqttBridge({ url: process.env.OUTPOST_MQTT_URL, deviceId: 'lamp-1' }), logger: pino(), services: [",
      '  defineService(seen, { commands: { set: (p) => p } }), defineService(unseen, { commands: { ping: (p) => p } })] })',
      'await rt.start({ waitForBroker: true })',
      "console.log(JSON.stringify({ level: 30, msg: 'ready' }))",
    ].join('\n'))
    const bundle = await bundleDevice('lamp', temp(), root)
    const p = startProcess(bundle.file, [], bareEnv({ OUTPOST_MQTT_URL: broker.url }))
    running.push(p)
    await p.waitFor('"msg":"ready"')
    const client = await mqtt.connectAsync(broker.url, { clientId: 'lamp-contract-reader' })
    try {
      const frame = new Promise<Buffer>((resolve) => client.on('message', (_t, payload) => payload.length > 0 && resolve(payload)))
      await client.subscribeAsync('ob/lamp-1/contract', { qos: 1 })
      const decoded = createEnvelopeCodec().decode(await frame)
      const services = (decoded.ok ? (decoded.envelope.payload as { services: { name: string; commands: Record<string, { payload: { type?: string } }> }[] }).services : [])
      expect(services.find((x) => x.name === 'seen')?.commands.set?.payload.type).toBe('object')
      expect(services.find((x) => x.name === 'unseen')?.commands.ping).toEqual({ payload: {}, result: {} })
    } finally {
      await client.endAsync()
    }
    await until(() => p.lines.some((l) => l.includes('contract not seen when this bundle was built')))
    expect(p.lines.filter((l) => l.includes('contract not seen when this bundle was built'))).toHaveLength(1)
    expect(p.lines.find((l) => l.includes('contract not seen'))).toContain('unseen@1')
    p.child.kill('SIGTERM')
  })

  it('display: serves its command; mqtt-packet\'s trace lines still follow DEBUG through the bundle\'s own `debug`', async () => {
    const device = start('display', { OUTPOST_DEVICE_ID: 'display-bundle', DEBUG: 'mqtt-packet:writeToStream' })
    await device.waitFor('"msg":"ready"')
    expect(await caller.client(displayContract).show({ text: 'from a bundle' }, { timeoutMs: 10_000 })).toEqual({ shown: true, lines: 1 })
    expect(device.lines.some((l) => / mqtt-packet:writeToStream generate: packet\.cmd: connect/.test(l))).toBe(true)
    expect(device.lines.some((l) => /mqtt-packet:parser/.test(l))).toBe(false)
    device.child.kill('SIGTERM')
    expect((await device.exited).code).toBe(0)
  })

  it("thermo with a wrong variable: its OutpostError is still one by name in the minified bundle (one fatal BAD_ARGUMENT line, exit code 2)", async () => {
    // exitOnStartError knows an OutpostError by its name (isOutpostError): were the name lost
    // to minification, the error would be thrown on with its stack and the exit code would be 1.
    const device = start('thermo', { OUTPOST_DEVICE_ID: 'thermo-bad-variable', OUTPOST_SAMPLE_MS: 'often' })
    expect((await device.exited).code).toBe(2)
    const fatal = JSON.parse(device.lines.find((l) => l.includes('"level":60'))!) as { code: string; msg: string }
    expect(fatal.code).toBe('BAD_ARGUMENT')
    expect(fatal.msg).toMatch(/^BAD_ARGUMENT: OUTPOST_SAMPLE_MS "often" is not accepted/)
  })

  it.each([
    // Of the size the manifest lists, so that dlopen itself refuses it.
    ['not for this Node', (file: string) => writeFileSync(file, Buffer.concat([Buffer.from('\x7fELF not really an addon'), Buffer.alloc(statSync(file).size - 24)]))],
    ['gone', (file: string) => rmSync(file)],
    // Opened by dlopen, a FIFO held the start for ever.
    ['a FIFO', (file: string) => (rmSync(file), execFileSync('mkfifo', [file]))],
  ])('thermo with an addon that is %s: one fatal ABI_MISMATCH line, exit code 1', async (_, spoil) => {
    const broken = path.join(temp(), 'thermo')
    cpSync(path.join(home, 'thermo'), broken, { recursive: true })
    spoil(path.join(broken, 'better_sqlite3.node'))
    const p = startProcess(path.join(broken, 'thermo.cjs'), [], bareEnv({ OUTPOST_MQTT_URL: broker.url, OUTPOST_DATA_DIR: path.join(broken, 'data'), OUTPOST_LOG_FORMAT: 'json' }))
    running.push(p)
    expect((await p.exited).code).toBe(1)
    const fatal = JSON.parse(p.lines.find((l) => l.includes('"level":60'))!) as { code: string; msg: string }
    expect(fatal.code).toBe('ABI_MISMATCH')
    expect(fatal.msg).toMatch(/SQLite addon of this device bundle .*better_sqlite3\.node/)
  })

  it('thermo with an addon cut short (a copy interrupted): one fatal HASH_MISMATCH line, exit code 1, not SIGBUS', async () => {
    const broken = path.join(temp(), 'thermo')
    cpSync(path.join(home, 'thermo'), broken, { recursive: true })
    const addon = path.join(broken, 'better_sqlite3.node')
    const size = statSync(addon).size
    // Its start there, its end gone: loaded, it was mapped past the end of the file.
    truncateSync(addon, Math.floor(size / 2))
    const p = startProcess(path.join(broken, 'thermo.cjs'), [], bareEnv({ OUTPOST_MQTT_URL: broker.url, OUTPOST_DATA_DIR: path.join(broken, 'data'), OUTPOST_LOG_FORMAT: 'json' }))
    running.push(p)
    expect(await p.exited).toMatchObject({ code: 1 })
    const fatal = JSON.parse(p.lines.find((l) => l.includes('"level":60'))!) as { code: string; msg: string }
    expect(fatal.code).toBe('HASH_MISMATCH')
    expect(fatal.msg).toMatch(new RegExp(`is cut short: ${Math.floor(size / 2)} bytes, where its own headers need at least \\d+`))
  })

  it('leaves out what a device never runs (esbuild metafile): no readable-stream, ws, socks, worker timers, pino transports, debug, lru-cache, bindings, cbor-extract, bl, rfdc, JSON Schema converter', async () => {
    const bundle = await bundleDevice('thermo', temp())
    const packages = new Set(Object.keys(bundle.metafile.inputs).map((i) => /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(i)?.[1]).filter((p) => p !== undefined))
    // A module stub takes its whole package out (`rfdc/default`: rfdc).
    const packageOf = (m: string): string => m.split('/').slice(0, m.startsWith('@') ? 2 : 1).join('/')
    for (const stub of DEVICE_STUBS) if (stub.file !== true) expect(packages, stub.module).not.toContain(packageOf(stub.module))
    const inputs = Object.keys(bundle.metafile.inputs)
    expect(inputs.some((i) => i.endsWith('pino/lib/transport.js'))).toBe(true) // there, but as the stub's text:
    expect(bundle.metafile.inputs['node_modules/pino/lib/transport.js']!.bytes).toBeLessThan(1_000)
    expect(packages).toContain('better-sqlite3')
    expect(bundle.needsSqlite).toBe(true)
    // The contract document's converter: the build made the document's parts (build/contract-table.ts).
    expect(packages).not.toContain('@valibot/to-json-schema')
    expect(inputs.some((i) => i.endsWith('runtime/service/contract-schemas.ts'))).toBe(false)
  })
})

describe('a device whose modules cannot be loaded at build time', () => {
  it('is still bundled, with the contract document converter kept, and says why', async () => {
    const root = temp()
    mkdirSync(path.join(root, 'devices', 'fragile'), { recursive: true })
    mkdirSync(path.join(root, 'build'))
    for (const dir of ['runtime', 'node_modules', 'build/stubs']) symlinkSync(path.join(PROJECT_ROOT, dir), path.join(root, dir), 'dir')
    writeFileSync(path.join(root, 'devices', 'fragile', 'sensor.ts'), "if (!process.env.ON_THE_DEVICE) throw new Error('no sensor on this machine')\nexport const read = (): number => 1\n")
    writeFileSync(path.join(root, 'devices', 'fragile', 'main.ts'), "import { read } from './sensor.js'\nimport { createRuntime } from '../../runtime/index.js'\nvoid createRuntime\nconsole.log(read())\n")
    const bundle = await bundleDevice('fragile', temp(), root)
    expect(bundle.converterKept).toMatch(/no sensor on this machine/)
    expect(Object.keys(bundle.metafile.inputs).some((i) => i.includes('node_modules/@valibot/to-json-schema/'))).toBe(true)
    const p = startProcess(bundle.file, [], bareEnv({ ON_THE_DEVICE: '1' }))
    expect((await p.exited).code).toBe(0)
    expect(p.lines[0]).toBe('1')
  })
})

describe('error classes in a bundle (minified without keepNames)', () => {
  it('keep their names as a built bundle runs: err.name, the class name pino logs as `type`, util.inspect and the stack', async () => {
    // A project with one device that throws each named error class: the runtime's and those of
    // dependencies whose names the build writes back (NAMED_ERROR_CLASSES), bundled as any device.
    const root = temp()
    mkdirSync(path.join(root, 'devices', 'names'), { recursive: true })
    mkdirSync(path.join(root, 'build'))
    for (const dir of ['runtime', 'node_modules', 'build/stubs']) symlinkSync(path.join(PROJECT_ROOT, dir), path.join(root, dir), 'dir')
    writeFileSync(path.join(root, 'devices', 'names', 'main.ts'), [
      "import { inspect } from 'node:util'",
      "import { pino } from 'pino'",
      "import SqliteError from 'better-sqlite3/lib/sqlite-error.js'",
      "import { ErrorWithReasonCode, ErrorWithSubackPacket } from 'mqtt/lib/shared'",
      "import { ErrorCode, OutpostError } from '../../runtime/errors.js'",
      "import { JobDecision } from '../../runtime/contract/queue.js'",
      "import { Damaged } from '../../runtime/stores/sqlite/database-open.js'",
      "const errors = [new OutpostError(ErrorCode.INTERNAL, 'x'), new JobDecision('retry', 'x'), new Damaged('x'), new SqliteError('x', 'SQLITE_ERROR'), new ErrorWithReasonCode('x', 128), new ErrorWithSubackPacket('x', {})]",
      'const lines = []',
      'const log = pino({}, { write: (s) => void lines.push(s) })',
      "for (const err of errors) log.error({ err }, 'failed')",
      "const report = errors.map((err, i) => ({ name: err.name, type: JSON.parse(lines[i]).err.type, inspected: inspect(err).split('\\n')[0], stack: err.stack.split('\\n')[0] }))",
      'console.log(JSON.stringify(report))',
    ].join('\n'))
    const bundle = await bundleDevice('names', temp(), root)
    const p = startProcess(bundle.file, [], bareEnv({}))
    expect((await p.exited).code).toBe(0)
    const named = (name: string, type = name): object => ({ name, type, inspected: `${type === name ? name : `${type} [${name}]`}: x`, stack: `${name}: x` })
    expect(JSON.parse(p.lines[0]!)).toEqual([
      named('OutpostError'),
      named('OutpostError', 'JobDecision'),
      named('Damaged'),
      named('SqliteError'),
      named('ErrorWithReasonCode'),
      named('ErrorWithSubackPacket'),
    ])
  })
})
