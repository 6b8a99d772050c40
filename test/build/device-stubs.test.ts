// The stand-ins a device bundle takes instead of parts of its dependencies (build/device-stubs.ts),
// as the bundle has them: bundled by esbuild through the plugin, then run beside the real
// modules. The list's copy answers as bl's BufferList does (mqtt-packet's parser on it reads
// every MQTT 3.1.1 and 5 packet, cut anywhere, as the real one does), the deep copy as rfdc's,
// and the Node answers of MQTT.js's browser detection and timers are the real ones. What is left
// out is never called by MQTT.js or by the runtime, and says so when called.
import { execFile, spawn } from 'node:child_process'
import { closeSync, constants, mkdirSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { promisify } from 'node:util'
import { build } from 'esbuild'
import { beforeAll, describe, expect, it } from 'vitest'
import { DEVICE_STUBS, deviceStubs } from '../../build/device-stubs.js'
import { bundleDevice } from '../../build/bundle.js'
import { PROJECT_ROOT } from '../../build/project-root.js'
import { tempDirs } from './build-helpers.js'

const temp = tempDirs('device-stubs')
const real = createRequire(import.meta.url)
const run = promisify(execFile)

/** What the bundle has in place of each module below (the real module when nothing is swapped). */
interface Bundled {
  bl: () => BufferListLike
  clone: (v: unknown) => unknown
  parser: (opts?: object) => ParserLike
  isBrowser: { default: boolean; isWebWorker: boolean; isReactNativeBrowser: boolean }
  getTimer: (variant?: unknown) => TimerLike
  nextTickSource: unknown
  generate: () => unknown
  redaction: () => unknown
  sqliteMethods: Record<string, () => unknown>
  SonicBoom: new (opts: { fd?: number; dest?: number | string; sync?: boolean; minLength?: number }) => SonicBoomLike
  safeStringify: { configure(opts: { maximumDepth?: number; maximumBreadth?: number }): (v: unknown) => string | undefined }
  stdSerializers: Record<string, (v: unknown) => unknown>
  handleAuth: { default: (client: object, packet: object, pump?: object) => void }
  stdTime: Record<string, () => string>
}
interface SonicBoomLike {
  write(s: string): boolean
  on(event: string, fn: (x: unknown) => void): void
  flushSync(): void
  end(): void
}
interface BufferListLike {
  length: number
  append(b: unknown): BufferListLike
  consume(n: number): BufferListLike
  slice(start?: number, end?: number): Buffer
  toString(encoding?: string, start?: number, end?: number): string
  readUInt8(offset?: number): number
  readUInt16BE(offset?: number): number
  readUInt32BE(offset?: number): number
}
interface ParserLike {
  on(event: string, fn: (x: unknown) => void): void
  parse(b: Buffer): number
}
interface TimerLike {
  set(fn: () => void, ms: number): unknown
  clear(id: unknown): void
}

const SQLITE_METHODS = ['function', 'aggregate', 'table', 'backup', 'serialize']

/** A small deterministic random sequence (no flaky seeds). */
function random(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return s / 2 ** 32
  }
}

/** The outcome of a call: its value, or the kind of error it threw. */
function outcome(f: () => unknown): unknown {
  try {
    return { value: f() }
  } catch (err) {
    return { threw: (err as Error).constructor.name, code: (err as { code?: string }).code }
  }
}

let bundled: Bundled
let inputs: string[]

beforeAll(async () => {
  // One bundle, as a device's is made (the plugin, platform node, minified), of the modules the stubs replace.
  const entry = [
    "export { default as bl } from 'bl'",
    "export { default as clone } from 'rfdc/default'",
    "export { parser } from 'mqtt-packet'",
    "export * as isBrowser from 'mqtt/lib/is-browser'",
    "export { default as getTimer } from 'mqtt/lib/get-timer'",
    "export { default as nextTickSource } from 'process-nextick-args'",
    "export { default as generate } from 'mqtt-packet/generate.js'",
    "export { default as redaction } from 'pino/lib/redaction.js'",
    "export { default as SonicBoom } from 'sonic-boom'",
    "export { default as safeStringify } from 'safe-stable-stringify'",
    "export { default as stdSerializers } from 'pino-std-serializers'",
    "export * as handleAuth from 'mqtt/lib/handlers/auth'",
    "export { default as stdTime } from 'pino/lib/time.js'",
    ...SQLITE_METHODS.map((m) => `import sqlite_${m} from 'better-sqlite3/lib/methods/${m}.js'`),
    `export const sqliteMethods = { ${SQLITE_METHODS.map((m) => `${m}: sqlite_${m}`).join(', ')} }`,
  ].join('\n')
  const out = path.join(temp(), 'stubs.cjs')
  const result = await build({
    absWorkingDir: PROJECT_ROOT,
    stdin: { contents: entry, resolveDir: PROJECT_ROOT, loader: 'js' },
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    minify: true,
    metafile: true,
    write: false,
    plugins: [deviceStubs(PROJECT_ROOT)],
    logLevel: 'silent',
  })
  writeFileSync(out, result.outputFiles[0]!.contents)
  inputs = Object.keys(result.metafile.inputs)
  bundled = real(out) as Bundled
})

describe('the stand-ins of device bundles', () => {
  it('safe-stable-stringify: the same text as the real one for what pino hands it (cycles, BigInts, deep and broad objects)', () => {
    const realStringify = real('safe-stable-stringify') as Bundled['safeStringify']
    const cycle: Record<string, unknown> = { z: 'q"uote', a: [1, 2n, { b: { c: { d: { e: { f: 1 } } } } }], date: new Date(0), u: undefined, fn: () => 1 }
    cycle.self = cycle
    const err = Object.assign(new Error('boom'), { code: 'E_X' }) as Error & { again?: unknown }
    err.again = err
    const broad = { list: Array.from({ length: 150 }, (_, i) => i), keys: Object.fromEntries(Array.from({ length: 130 }, (_, i) => [`k${i}`, i])), n: 10n }
    const typed = { t: new Uint8Array([1, 2, 3]), wide: new Float64Array(120), nan: NaN, inf: -Infinity, holes: [undefined, () => 1, Symbol('s')], buf: Buffer.from('hi'), map: new Map([[1, 2]]) }
    const odd = { 'lone\ud800': 'a\u0001b', emptyA: [], emptyO: {}, nil: null, yes: true, no: false, neg: -5n, err, nested: [[[[[['x']]]]]], exact: Array.from({ length: 101 }, (_, i) => i) }
    const values: unknown[] = [cycle, err, broad, typed, odd, 5n, [1n, cycle], { a: { toJSON: () => ({ back: 1n }) } }]
    for (const v of values) if (typeof v === 'object') (v as Record<string, unknown>).loop = v
    values.push(7n, 'text', null)
    // pino's options (depthLimit 5, edgeLimit 100), small limits, and none.
    for (const opts of [{ maximumDepth: 5, maximumBreadth: 100 }, { maximumDepth: 2, maximumBreadth: 3 }, {}]) {
      const mine = bundled.safeStringify.configure(opts)
      const theirs = realStringify.configure(opts)
      for (const [i, v] of values.entries()) expect(mine(v), `value ${i} with ${JSON.stringify(opts)}`).toBe(theirs(v))
    }
  })

  it('sonic-boom: lines reach a file and a pipe whole, in order, also when the pipe is full; EPIPE is an error event, not a throw', async () => {
    const dir = temp()
    // Through pino, as a device logs: the same lines as with the real destination.
    const { pino } = real('pino') as typeof import('pino')
    const lines = (file: string, Boom: Bundled['SonicBoom']): string[] => {
      const fd = openSync(file, 'w')
      const log = pino({ base: { device: 'd1' }, timestamp: false }, new Boom({ fd, sync: true }) as never)
      log.info({ n: 1 }, 'one')
      log.warn({ cycle: (() => { const o: Record<string, unknown> = {}; o.o = o; return o })() }, 'two')
      log.error({ big: 12n }, 'three')
      closeSync(fd)
      return readFileSync(file, 'utf8').split('\n')
    }
    const mineLines = lines(path.join(dir, 'mine.log'), bundled.SonicBoom)
    expect(mineLines).toEqual(lines(path.join(dir, 'real.log'), real('sonic-boom') as Bundled['SonicBoom']))
    expect(mineLines).toHaveLength(4)

    // A file named by path is appended to.
    const named = path.join(dir, 'named.log')
    writeFileSync(named, 'first\n')
    const byPath = new bundled.SonicBoom({ dest: named, sync: true })
    expect(byPath.write('second\n')).toBe(true)
    byPath.end()
    expect(readFileSync(named, 'utf8')).toBe('first\nsecond\n')

    // A pipe that fills (its reader is slow, the descriptor non-blocking): every byte arrives.
    const reader = spawn(process.execPath, ['-e', "let n = 0; setTimeout(() => process.stdin.on('data', (d) => { n += d.length }).on('end', () => console.log(n)), 300)"], { stdio: ['pipe', 'pipe', 'inherit'] })
    const counted = new Promise<string>((resolve) => {
      let out = ''
      reader.stdout.on('data', (d: Buffer) => (out += d.toString()))
      reader.on('close', () => resolve(out.trim()))
    })
    const pipeFd = (reader.stdin as unknown as { _handle: { fd: number } })._handle.fd
    const toPipe = new bundled.SonicBoom({ fd: pipeFd, sync: true })
    const line = `${'x'.repeat(1023)}\n`
    for (let i = 0; i < 1024; i++) expect(toPipe.write(line)).toBe(true)
    reader.stdin.end()
    expect(await counted).toBe(String(1024 * 1024))

    // A pipe nobody reads any more: an 'error' event with EPIPE, the write answers false.
    const fifo = path.join(dir, 'fifo')
    await run('mkfifo', [fifo])
    const readEnd = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK)
    const writeEnd = openSync(fifo, 'w')
    closeSync(readEnd)
    const broken = new bundled.SonicBoom({ fd: writeEnd, sync: true })
    const errors: unknown[] = []
    broken.on('error', (e) => errors.push((e as { code?: string }).code))
    expect(broken.write('lost\n')).toBe(false)
    expect(errors).toEqual(['EPIPE'])
    closeSync(writeEnd)

    // What the stand-in leaves out says so.
    expect(() => new bundled.SonicBoom({ fd: 1, minLength: 4096 })).toThrow(/left out of this device bundle by outpost build/)
  })

  it("pino's serializers: the error serializers are pino's own; those of HTTP requests and responses say they were left out", () => {
    const theirs = real('pino-std-serializers') as Record<string, (v: unknown) => unknown>
    const cause = Object.assign(new Error('disk'), { code: 'EIO' })
    const err = Object.assign(new TypeError('boom', { cause }), { details: { n: 1 } })
    // As pino writes them (each package's objects have its own prototype).
    const line = (v: unknown): string => JSON.stringify(v)
    expect(line(bundled.stdSerializers.err!(err))).toBe(line(theirs.err!(err)))
    expect(line(bundled.stdSerializers.errWithCause!(err))).toBe(line(theirs.errWithCause!(err)))
    expect(line(bundled.stdSerializers.err!(err))).toContain('"type":"TypeError","message":"boom: disk"')
    const custom = (e: unknown): unknown => ({ wrapped: e })
    const wrap = bundled.stdSerializers.wrapErrorSerializer as unknown as (f: (e: unknown) => unknown) => (e: unknown) => unknown
    expect(line(wrap(custom)(err))).toBe(line((theirs.wrapErrorSerializer as unknown as typeof wrap)(custom)(err)))
    for (const name of ['req', 'res', 'mapHttpRequest', 'mapHttpResponse']) expect(() => bundled.stdSerializers[name]!({}), name).toThrow(/left out of this device bundle by outpost build/)
  })

  it("debug: trace lines as debug writes them off a terminal (%o on one line, %O, %s, %d, %%)", async () => {
    const script = path.join(temp(), 'trace.cjs')
    writeFileSync(script, [
      'const d = require(process.argv[2])("mqtt-packet:parser")',
      "d('packet: %o done %s %d %%', { cmd: 'connack', retain: false, nested: { a: [1, 2, 3], s: 'x%y' } }, 'str', 42)",
      "d('%O', { a: 1, b: { c: [1, 2] } })",
      "d('plain', { b: 2 })",
      "require(process.argv[2])('other')('not wanted')",
    ].join('\n'))
    const lines = async (module: string): Promise<string[]> => {
      const { stderr } = await run(process.execPath, [script, module], { env: { ...process.env, DEBUG: 'mqtt-packet:*', DEBUG_COLORS: 'no' } })
      // Without the time each line starts with.
      return stderr.trimEnd().split('\n').map((l) => l.replace(/^\S+ /, ''))
    }
    const mine = await lines(path.join(PROJECT_ROOT, 'build', 'stubs', 'debug.cjs'))
    expect(mine).toEqual(await lines(real.resolve('debug')))
    expect(mine).toHaveLength(3)
    expect(mine[0]).toBe("mqtt-packet:parser packet: { cmd: 'connack', retain: false, nested: { a: [ 1, 2, 3 ], s: 'x%y' } } done str 42 %")
  })

  it("pino's time functions: the same lines as pino's; isoTimeNano says it was left out", () => {
    const theirs = real('pino/lib/time.js') as Record<string, () => string>
    expect(bundled.stdTime.nullTime!()).toBe(theirs.nullTime!())
    for (const name of ['epochTime', 'unixTime', 'isoTime']) {
      // Both read Date.now(): the same millisecond, the same text.
      const now = Date.now
      Date.now = () => 1_767_225_600_123
      try {
        expect(bundled.stdTime[name]!(), name).toBe(theirs[name]!())
      } finally {
        Date.now = now
      }
    }
    expect(() => bundled.stdTime.isoTimeNano!()).toThrow(/left out of this device bundle by outpost build/)
  })

  it("MQTT.js's AUTH handler: a packet the client did not ask for is answered as MQTT.js answers it (the connection closed, reason code 130)", () => {
    const theirs = real('mqtt/lib/handlers/auth') as Bundled['handleAuth']
    const packet = { cmd: 'auth', reasonCode: 24, properties: { authenticationMethod: 'tok' } }
    // A client as the handler sees it: what it reads and calls, recorded.
    const client = (protocolVersion: number, pumpCurrent?: boolean) => {
      const calls: unknown[] = []
      const c = {
        options: { protocolVersion },
        log: (...a: unknown[]) => calls.push(['log', ...a]),
        _cleanUp: (forced: boolean) => calls.push(['cleanUp', forced]),
        emit: (event: string, e: Error & { code?: number }) => calls.push([event, e.constructor.name, e.message, e.code]),
        handleAuth: () => calls.push(['handleAuth']),
      }
      const pump = pumpCurrent === undefined ? undefined : { discardParsedPackets: () => calls.push(['discard']), isCurrent: () => pumpCurrent }
      return { c, pump, calls }
    }
    for (const [version, current] of [[4, undefined], [5, undefined], [4, true], [5, true], [5, false]] as const) {
      const mine = client(version, current)
      const real_ = client(version, current)
      bundled.handleAuth.default(mine.c, packet, mine.pump)
      theirs.default(real_.c, packet, real_.pump)
      expect(mine.calls, `MQTT ${version}, pump ${String(current)}`).toEqual(real_.calls)
      expect(mine.calls.some((c) => (c as unknown[])[0] === 'error')).toBe(true)
    }
  })

  it('are what the bundle has: the real bl, rfdc and process-nextick-args are not in it', () => {
    for (const file of ['bl.cjs', 'rfdc-default.cjs', 'sonic-boom.cjs', 'safe-stable-stringify.cjs']) expect(inputs).toContain(`build/stubs/${file}`)
    for (const pkg of ['bl', 'rfdc', 'process-nextick-args', 'inherits', 'sonic-boom', 'atomic-sleep', 'safe-stable-stringify']) expect(inputs.some((i) => i.startsWith(`node_modules/${pkg}/`)), pkg).toBe(false)
    expect(DEVICE_STUBS.map((s) => s.module)).toEqual(expect.arrayContaining(['bl', 'rfdc/default', 'process-nextick-args', 'mqtt/build/lib/is-browser.js', 'mqtt/build/lib/get-timer.js']))
  })

  it("bl: the list answers as bl's BufferList does, call for call, bytes, views and errors alike", () => {
    const RealList = real('bl/BufferList.js') as new () => BufferListLike
    for (let seed = 1; seed <= 40; seed++) {
      const next = random(seed)
      const stub = bundled.bl()
      const list = new RealList()
      // Chunks of their own memory: a result that is a view of one shares its ArrayBuffer.
      const chunkMemory = new Set<ArrayBufferLike>()
      const chunk = (): Buffer => {
        const n = Math.floor(next() * 7) === 0 ? 0 : Math.floor(next() * 40)
        const pad = Math.floor(next() * 3)
        const b = Buffer.alloc(n + 2 * pad).subarray(pad, pad + n)
        for (let i = 0; i < n; i++) b[i] = Math.floor(next() * 256)
        chunkMemory.add(b.buffer)
        return b
      }
      const same = (f: (l: BufferListLike) => unknown, what: string): void => {
        const a = outcome(() => f(stub))
        const b = outcome(() => f(list))
        const shape = (o: unknown): unknown => {
          const v = (o as { value?: unknown }).value
          return Buffer.isBuffer(v) ? { bytes: v.toString('hex'), view: chunkMemory.has(v.buffer) } : o
        }
        expect(shape(a), what).toEqual(shape(b))
        expect(stub.length, `length after ${what}`).toBe(list.length)
      }
      const at = (): number | undefined => {
        const r = next()
        if (r < 0.05) return undefined
        if (r < 0.15) return -Math.floor(next() * 20)
        return Math.floor(next() * (list.length + 6))
      }
      for (let i = 0; i < 300; i++) {
        const op = next()
        if (op < 0.25) {
          const c = chunk()
          stub.append(c)
          list.append(c)
        } else if (op < 0.45) {
          const s = at()
          const e = at()
          same((l) => l.slice(s, e), `slice(${s}, ${e})`)
        } else if (op < 0.55) {
          const s = at()
          const e = at()
          same((l) => l.toString('hex', s, e), `toString(hex, ${s}, ${e})`)
        } else if (op < 0.8) {
          const o = next() < 0.1 ? undefined : Math.floor(next() * (list.length + 3))
          same((l) => l.readUInt8(o), `readUInt8(${o})`)
          same((l) => l.readUInt16BE(o), `readUInt16BE(${o})`)
          same((l) => l.readUInt32BE(o), `readUInt32BE(${o})`)
        } else {
          const r = next()
          const n = r < 0.05 ? NaN : r < 0.1 ? -3 : r < 0.15 ? 2.7 : Math.floor(next() * 30)
          same((l) => (l.consume(n), undefined), `consume(${n})`)
        }
      }
    }
  })

  it("bl: mqtt-packet's parser on it reads MQTT 3.1.1 and 5 packets, cut anywhere, and garbage, as on the real one", () => {
    const mqttPacket = real('mqtt-packet') as { generate: (p: object, o?: object) => Buffer; parser: (o?: object) => ParserLike }
    const userProperties = { room: 'kitchen', tags: ['a', 'b'] }
    const v4 = [
      { cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'dev-1', keepalive: 30, username: 'u', password: Buffer.from('p'), will: { topic: 'w', payload: Buffer.from('bye'), qos: 1, retain: false } },
      { cmd: 'connack', returnCode: 0, sessionPresent: true },
      { cmd: 'publish', topic: 'a/b', payload: Buffer.alloc(0), qos: 0, retain: false, dup: false },
      { cmd: 'publish', topic: 'a/b', payload: Buffer.from('hello'), qos: 1, messageId: 7, retain: true, dup: false },
      { cmd: 'publish', topic: 'x/y/z', payload: Buffer.alloc(300, 1), qos: 2, messageId: 65535, retain: false, dup: true },
      { cmd: 'publish', topic: 'big', payload: Buffer.alloc(70_000, 7), qos: 1, messageId: 9, retain: false, dup: false },
      { cmd: 'puback', messageId: 7 },
      { cmd: 'pubrec', messageId: 8 },
      { cmd: 'pubrel', messageId: 8 },
      { cmd: 'pubcomp', messageId: 8 },
      { cmd: 'subscribe', messageId: 3, subscriptions: [{ topic: 'a/+', qos: 1 }, { topic: 'b/#', qos: 2 }] },
      { cmd: 'suback', messageId: 3, granted: [1, 2, 128] },
      { cmd: 'unsubscribe', messageId: 4, unsubscriptions: ['a/+', 'b/#'] },
      { cmd: 'unsuback', messageId: 4 },
      { cmd: 'pingreq' },
      { cmd: 'pingresp' },
      { cmd: 'disconnect' },
    ]
    const v5 = [
      {
        cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: false, clientId: 'dev-5', keepalive: 10,
        properties: { sessionExpiryInterval: 3600, receiveMaximum: 20, maximumPacketSize: 100_000, topicAliasMaximum: 10, requestResponseInformation: true, userProperties, authenticationMethod: 'tok', authenticationData: Buffer.from([1, 2]) },
      },
      { cmd: 'connack', reasonCode: 0, sessionPresent: false, properties: { topicAliasMaximum: 5, maximumPacketSize: 65_536, assignedClientIdentifier: 'given', serverKeepAlive: 20, userProperties } },
      {
        cmd: 'publish', topic: 'r/s', payload: Buffer.from('{"x":1}'), qos: 1, messageId: 11, retain: false, dup: false,
        properties: { payloadFormatIndicator: true, messageExpiryInterval: 60, topicAlias: 3, responseTopic: 'reply/here', correlationData: Buffer.from('c0ffee', 'hex'), userProperties, subscriptionIdentifier: 42, contentType: 'application/json' },
      },
      { cmd: 'publish', topic: '', payload: Buffer.from('by alias'), qos: 0, retain: false, dup: false, properties: { topicAlias: 3 } },
      { cmd: 'puback', messageId: 11, reasonCode: 16, properties: { reasonString: 'no subscribers', userProperties } },
      { cmd: 'pubrec', messageId: 12, reasonCode: 0 },
      { cmd: 'pubrel', messageId: 12, reasonCode: 146, properties: { reasonString: 'unknown id' } },
      { cmd: 'pubcomp', messageId: 12, reasonCode: 0 },
      { cmd: 'subscribe', messageId: 5, properties: { subscriptionIdentifier: 42, userProperties }, subscriptions: [{ topic: 'c/#', qos: 2, nl: true, rap: true, rh: 1 }] },
      { cmd: 'suback', messageId: 5, granted: [2, 135], properties: { reasonString: 'partly' } },
      { cmd: 'unsubscribe', messageId: 6, unsubscriptions: ['c/#'], properties: { userProperties } },
      { cmd: 'unsuback', messageId: 6, granted: [0, 17] },
      { cmd: 'auth', reasonCode: 24, properties: { authenticationMethod: 'tok', authenticationData: Buffer.from([3]) } },
      { cmd: 'disconnect', reasonCode: 4, properties: { sessionExpiryInterval: 0, reasonString: 'bye', serverReference: 'other' } },
      { cmd: 'pingreq' },
    ]
    const streams: { opts: object; bytes: Buffer }[] = [
      { opts: {}, bytes: Buffer.concat(v4.map((p) => mqttPacket.generate(p))) },
      { opts: { protocolVersion: 5 }, bytes: Buffer.concat(v5.map((p) => mqttPacket.generate(p, { protocolVersion: 5 }))) },
    ]
    const noise = random(99)
    for (let i = 0; i < 5; i++) streams.push({ opts: i % 2 === 0 ? {} : { protocolVersion: 5 }, bytes: Buffer.from(Array.from({ length: 200 }, () => Math.floor(noise() * 256))) })
    const plain = (x: unknown): unknown => JSON.parse(JSON.stringify(x, (_k, v: unknown) => (v !== null && typeof v === 'object' && (v as { type?: string }).type === 'Buffer' ? `bytes:${Buffer.from((v as { data: number[] }).data).toString('hex')}` : v)))
    const run = (make: (o?: object) => ParserLike, opts: object, bytes: Buffer, cuts: number[]): unknown[] => {
      const events: unknown[] = []
      const p = make(opts)
      p.on('packet', (packet) => events.push({ packet: plain({ ...(packet as object) }) }))
      p.on('error', (err) => events.push({ error: (err as Error).message }))
      let from = 0
      for (const to of [...cuts, bytes.length]) {
        events.push({ left: p.parse(bytes.subarray(from, to)) })
        from = to
      }
      return events
    }
    for (const [s, { opts, bytes }] of streams.entries()) {
      for (let seed = 1; seed <= 15; seed++) {
        const next = random(seed * 31 + s)
        const cuts = [...new Set(Array.from({ length: Math.floor(next() * 40) }, () => Math.floor(next() * bytes.length)))].sort((a, b) => a - b)
        const expected = run(mqttPacket.parser, opts, bytes, cuts)
        if (s < 2) expect(expected.filter((e) => (e as { packet?: unknown }).packet !== undefined)).toHaveLength(s === 0 ? v4.length : v5.length)
        expect(run(bundled.parser, opts, bytes, cuts), `stream ${s}, cuts ${cuts.join(',')}`).toEqual(expected)
      }
    }
  })

  it("rfdc: the deep copy MQTT.js makes of outgoing publish packets is rfdc's default copy", () => {
    const rfdc = real('rfdc/default') as (v: unknown) => unknown
    class Thing {
      a = 1
      b = { c: [1, 2] }
    }
    const holes = [1, , 3] as unknown[] // eslint-disable-line no-sparse-arrays
    const extra = Object.assign([1, 2], { note: 'x' })
    const noProto = Object.assign(Object.create(null) as object, { k: { v: 1 } })
    const bytes = Buffer.from('abcdef')
    const values: unknown[] = [
      undefined, null, 0, 'text', true,
      { cmd: 'publish', topic: 'a/b', payload: Buffer.from('hello'), qos: 1, messageId: 3, retain: false, dup: false, properties: { topicAlias: 2, correlationData: Buffer.from([1, 2, 3]), userProperties: { a: 'b', c: ['d', 'e'] }, responseTopic: 'r' } },
      { nested: { deeper: { list: [{ x: 1 }, [2, [3]]] } }, when: new Date(1_700_000_000_000), none: null, und: undefined },
      { map: new Map<unknown, unknown>([[{ key: 1 }, { value: [1] }], ['s', new Date(5)]]), set: new Set([1, { two: 2 }, [3]]) },
      { view: bytes.subarray(2, 4), u8: new Uint8Array([1, 2, 3]).subarray(1), f64: new Float64Array([1.5, -2]), dv: new DataView(new ArrayBuffer(4), 1), i16: new Int16Array([-1, 7]) },
      [holes, extra, new Thing(), noProto],
      new Date(0), new Map([[1, { a: 1 }]]), new Set(['a']), bytes, new Uint16Array([1, 2]), new Thing(),
    ]
    // Every object reachable from a value (through properties, Map and Set entries).
    const objectsIn = (x: unknown, seen = new Set<object>()): Set<object> => {
      if (typeof x !== 'object' || x === null || seen.has(x)) return seen
      seen.add(x)
      const parts = x instanceof Map ? [...x].flat() : x instanceof Set ? [...x] : ArrayBuffer.isView(x) ? [] : Object.values(x)
      for (const p of parts) objectsIn(p, seen)
      return seen
    }
    for (const v of values) {
      const mine = bundled.clone(v)
      expect(mine).toStrictEqual(rfdc(v))
      // A deep copy, as rfdc's: no object of the value is in it.
      const original = objectsIn(v)
      expect([...objectsIn(mine)].filter((o) => original.has(o))).toEqual([])
    }
    // A deep copy: nothing of the packet is shared (the stored packet is not the one sent).
    const packet = values[5] as { payload: Buffer; properties: { userProperties: { c: string[] } } }
    const copy = bundled.clone(packet) as typeof packet
    copy.payload[0] = 0
    expect(packet.payload.toString()).toBe('hello')
    copy.properties.userProperties.c.push('f')
    expect(packet.properties.userProperties.c).toEqual(['d', 'e'])
  })

  it("MQTT.js's browser detection, timers and nextTick: under Node, the real modules' answers", async () => {
    const isBrowser = real('mqtt/lib/is-browser') as Bundled['isBrowser']
    expect({ ...bundled.isBrowser }).toEqual({ default: isBrowser.default, isWebWorker: isBrowser.isWebWorker, isReactNativeBrowser: isBrowser.isReactNativeBrowser })
    expect(bundled.isBrowser.default).toBe(false)
    // Under Node, process-nextick-args is `process` itself (its nextTick): so is the bundle's.
    expect(real('process-nextick-args')).toBe(process)
    expect(bundled.nextTickSource).toBe(process)
    const realGetTimer = (real('mqtt/lib/get-timer') as { default: Bundled['getTimer'] }).default
    // `worker` is worker-timers, which needs a browser's Worker: bundles had it as the global timers before (worker-timers.ts).
    for (const variant of [undefined, 'auto', 'native', 'worker']) {
      for (const getTimer of variant === 'worker' ? [bundled.getTimer] : [realGetTimer, bundled.getTimer]) {
        const timer = getTimer(variant)
        let ticks = 0
        await new Promise<void>((resolve) => {
          const id = timer.set(() => {
            if (++ticks === 3) {
              timer.clear(id)
              resolve()
            }
          }, 1)
        })
        await new Promise((r) => setTimeout(r, 20))
        expect(ticks, `${String(variant)}: cleared after the third tick`).toBe(3)
      }
    }
  })

  it('what is left out is never called by MQTT.js or the runtime, and says so when called', () => {
    const jsUnder = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true, recursive: true })
        .filter((e) => e.isFile() && /\.(c|m)?[jt]s$/.test(e.name))
        .map((e) => readFileSync(path.join(e.parentPath, e.name), 'utf8'))
    // MQTT.js writes packets with writeToStream; generate is mqtt-packet's other writer.
    expect(jsUnder(path.join(PROJECT_ROOT, 'node_modules/mqtt/build')).filter((t) => /\.generate\b/.test(t))).toEqual([])
    const ours = [...jsUnder(path.join(PROJECT_ROOT, 'runtime')), ...jsUnder(path.join(PROJECT_ROOT, 'devices'))]
    // The runtime's loggers set no redact option (URLs are redacted before logging).
    expect(ours.filter((t) => /\bredact\s*:/.test(t))).toEqual([])
    // The SQLite stores prepare, run transactions and pragmas: none of the Database methods left out.
    expect(ours.filter((t) => new RegExp(`\\.(${SQLITE_METHODS.join('|')})\\(`).test(t))).toEqual([])
    expect(() => bundled.generate()).toThrow(/left out of this device bundle by outpost build/)
    expect(() => bundled.redaction()).toThrow(/left out of this device bundle by outpost build/)
    for (const m of SQLITE_METHODS) expect(() => bundled.sqliteMethods[m]!(), m).toThrow(/left out of this device bundle by outpost build/)
  })
})

describe('the lines a device bundle writes differently, and the built-ins a device loads before it is ready', () => {
  it('a build fails, naming the patch, when a package no longer has the line a patch replaces', async () => {
    const dir = temp()
    const lib = path.join(dir, 'node_modules', 'pino', 'lib')
    mkdirSync(lib, { recursive: true })
    writeFileSync(path.join(lib, 'tools.js'), "const { isMainThread } = require('node:worker_threads')\nmodule.exports = isMainThread\n")
    writeFileSync(path.join(dir, 'entry.js'), "require('pino/lib/tools.js')\n")
    const failed = await build({ absWorkingDir: dir, entryPoints: ['entry.js'], bundle: true, platform: 'node', write: false, logLevel: 'silent', plugins: [deviceStubs(PROJECT_ROOT)] }).then(
      () => undefined,
      (err: unknown) => err as Error,
    )
    expect(failed?.message).toContain("pino/lib/tools.js no longer has `const { isMainThread } = require('worker_threads')`")
  })

  it('a demo bundle loads neither node:crypto, node:assert, node:worker_threads, node:fs/promises, node:zlib, node:module nor node:net and streams before it reports ready (from its code cache)', async () => {
    const out = temp()
    const data = temp()
    const { file } = await bundleDevice('display', out)
    // Started as a device is, with a preload that writes the built-ins loaded so far when the ready
    // line goes out (to descriptor 1, here a socket from a Node parent, set non-blocking: runtime/logger.ts), and ends the process a turn later (its code cache is written as it exits).
    const probe = path.join(out, 'probe.cjs')
    writeFileSync(
      probe,
      `const fs = require('fs')
const ws = fs.writeSync
fs.writeSync = function (fd, chunk, ...rest) {
  if (fd !== 2 && String(chunk).includes('"msg":"ready"')) { ws(2, 'LOADED ' + JSON.stringify(process.moduleLoadList) + '\\n'); setImmediate(() => process.exit(0)) }
  return ws.call(this, fd, chunk, ...rest)
}
`,
    )
    // Twice, with a code cache as the launcher gives one: the second start reads and checks it.
    const cache = path.join(data, 'compile-cache')
    let stderr = ''
    for (let i = 0; i < 2; i++) {
      ;({ stderr } = await run(process.execPath, ['-r', probe, file], {
        env: { ...process.env, OUTPOST_MQTT_URL: 'mqtt://127.0.0.1:9', OUTPOST_DEVICE_ID: 'probe-1', OUTPOST_DATA_DIR: data, NODE_COMPILE_CACHE: cache },
        timeout: 30_000,
      }))
    }
    expect(readdirSync(cache).filter((f) => f.endsWith('.v8'))).toHaveLength(1)
    const line = stderr.split('\n').find((l) => l.startsWith('LOADED '))
    expect(line).toBeDefined()
    const loaded = JSON.parse(line!.slice('LOADED '.length)) as string[]
    expect(loaded).toContain('NativeModule fs') // the list is the real one
    // node:fs/promises is not in Node's startup snapshot (1-1.5 ms to load): the OTA service loads
    // it when it first flashes. node:zlib loads node:stream (~1.3 ms): the runner checks the cache
    // with zlib's CRC-32 from Node's binding. node:module (0.3-0.5 ms) is loaded by createRequire's
    // first call (build/stubs/node-module.ts). The log lines go to descriptor 1: process.stdout, a
    // pipe here as under the launcher, would load node:net and Node's streams (2 ms).
    for (const m of ['crypto', 'assert', 'worker_threads', 'fs/promises', 'internal/fs/promises', 'zlib', 'module', 'net', 'stream', 'tty']) expect(loaded, m).not.toContain(`NativeModule ${m}`)
  })
})
