// The contract document end to end: device runtimes over MQTT announce the JSON Schemas of what
// they serve (retained on ob/<device>/contract), a real gateway (aedes in process, port 0) keeps
// them in its registry and checks HTTP callers' payloads against them before anything reaches a
// device (the handlers count their calls); a device without a document of its live process is
// left to check payloads itself; the broker's ACL keeps each device to its own contract topic;
// hostile documents are counted and ignored. And, without a broker: nothing a device accepts is
// refused by the gateway's check of the converted schemas.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import mqtt from 'mqtt'
import { pino } from 'pino'
import * as v from 'valibot'
import { describe, expect, it } from 'vitest'
import { createPayloadCheck } from '../../gateway/commands/payload-check.js'
import { defaultGatewayConfig } from '../../gateway/config/gateway-config.js'
import { startGateway, type Gateway } from '../../gateway/index.js'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createRuntime, defineContract, defineService, ENVELOPE_VERSION, type Envelope, type Runtime } from '../../runtime/index.js'
import { safeParse } from '../../runtime/service/compiled-schema.js'
import { buildContractDocument } from '../../runtime/service/contract-document.js'
import { createEnvelopeCodec } from '../../runtime/wire/codec.js'
import type { ContractPayload } from '../../runtime/wire/envelope.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { freePort, until } from '../helpers/wait.js'

const quiet = pino({ level: 'silent' })

const probeContract = defineContract({
  name: 'probe',
  version: '1',
  commands: {
    set: {
      payload: v.object({
        name: v.pipe(v.string(), v.minLength(2)),
        level: v.pipe(v.number(), v.integer(), v.minValue(0)),
        mode: v.picklist(['auto', 'manual']),
        // Trimmed before its length is checked: "  ab  " is fine on the device.
        tag: v.optional(v.pipe(v.string(), v.trim(), v.maxLength(3))),
        raw: v.optional(v.instance(Uint8Array)),
      }),
      result: v.object({ ok: v.boolean() }),
    },
  },
  events: { changed: v.object({ level: v.number() }) },
})
const probeService = (calls: { n: number }) => defineService(probeContract, { commands: { set: () => (calls.n++, { ok: true }) } })

interface Answer {
  status: number
  error?: { code: string; message: string; details?: { issues?: { path: string; expected: string | null; received: string }[]; checkedBy?: string } }
  result?: unknown
}

describe('contract documents and payload checks at the gateway', () => {
  const cleanup = cleanupAfterEach()

  const gateway = async (opts: { port?: number; auth?: boolean; dataDir?: string } = {}): Promise<Gateway> => {
    const config = defaultGatewayConfig()
    config.http.enabled = true
    config.http.port = 0
    if (opts.auth === true) config.auth.enabled = true
    if (opts.dataDir !== undefined) config.dataDir = opts.dataDir
    const gw = await startGateway({ config, port: opts.port ?? 0, logger: quiet })
    cleanup(() => gw.close())
    return gw
  }
  const device = async (url: string, id: string, calls: { n: number }, extra: { username?: string; password?: string } = {}): Promise<Runtime> => {
    const rt = createRuntime({ bridge: createMqttBridge({ url, deviceId: id, logger: quiet, reconnect: { initialMs: 50, maxMs: 300 }, ...extra }), services: [probeService(calls)], logger: quiet })
    cleanup(() => rt.stop({ drainMs: 100 }))
    await rt.start({ waitForBroker: true })
    return rt
  }
  /** True once the gateway holds the document of the device's live process. */
  const current = (gw: Gateway, id: string): boolean => {
    const c = gw.registry.contract(id)
    return c !== undefined && c.instance === gw.registry.get(id)?.instance && gw.registry.get(id)?.online === true
  }
  const post = async (gw: Gateway, route: string, body: unknown): Promise<Answer> => {
    const res = await fetch(`${gw.http!.url}${route}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) })
    return { status: res.status, ...((await res.json()) as Omit<Answer, 'status'>) }
  }
  /** A gateway with device `id` live and its document held, and a plain MQTT client (auth off) that may publish documents in its name. */
  const announcedBySomeone = async (id: string): Promise<{ gw: Gateway; calls: { n: number }; anyone: mqtt.MqttClient }> => {
    const gw = await gateway()
    const calls = { n: 0 }
    await device(gw.broker.url, id, calls)
    await until(() => current(gw, id), 30_000)
    const anyone = await mqtt.connectAsync(gw.broker.url, { clientId: 'someone', reconnectPeriod: 0 })
    cleanup(() => anyone.endAsync(true))
    return { gw, calls, anyone }
  }
  const bad = { name: 'x', level: -1.5, mode: 'off', extra: true }
  const good = { name: 'ok', level: 3, mode: 'auto', tag: '  ab  ' }
  const codec = createEnvelopeCodec({ maxFrameBytes: Number.MAX_SAFE_INTEGER })
  const contractFrame = (src: string, inst: string, payload: unknown, kind: Envelope['kind'] = 'contract'): Buffer =>
    Buffer.from(codec.encode({ v: ENVELOPE_VERSION, kind, id: `c-${Math.random()}`, src, inst, at: Date.now(), payload }))

  it('a device announces the schemas of what it serves; the registry keeps the document (across a restart) and GET /devices/:id/contract serves it', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-contract-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    const gw = await gateway({ dataDir: dir })
    await device(gw.broker.url, 'probe-1', { n: 0 })
    await until(() => current(gw, 'probe-1'), 30_000)
    const doc = gw.registry.contract('probe-1')!.document
    expect(doc).toMatchObject({ v: 1, dialect: 'draft-07' })
    expect(doc.services).toEqual([
      {
        name: 'probe',
        version: '1',
        commands: {
          set: {
            payload: {
              type: 'object',
              properties: { name: { type: 'string', minLength: 2 }, level: { type: 'integer', minimum: 0 }, mode: { enum: ['auto', 'manual'], type: 'string' }, tag: { type: 'string' }, raw: {} },
              required: ['name', 'level', 'mode'],
            },
            result: { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'] },
          },
        },
        events: { changed: { type: 'object', properties: { level: { type: 'number' } }, required: ['level'] } },
      },
    ])
    expect(gw.registry.stats().contracts).toEqual({ recorded: 1, ignored: {} })
    const res = await fetch(`${gw.http!.url}/devices/probe-1/contract`)
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({ device: 'probe-1', current: true, instance: gw.registry.get('probe-1')!.instance, document: doc })
    expect((await fetch(`${gw.http!.url}/devices/nobody/contract`)).status).toBe(404)

    const instance = gw.registry.contract('probe-1')!.instance
    await gw.close()
    const again = await gateway({ dataDir: dir })
    expect(again.registry.contract('probe-1')).toMatchObject({ instance, document: doc })
  }, 60_000)

  it('a document that reaches the gateway before its device\'s presence is kept once the presence follows (one whose presence never comes: test/e2e/gateway-metrics-cloud.test.ts)', async () => {
    const gw = await gateway()
    const early = await mqtt.connectAsync(gw.broker.url, { clientId: 'early-1', reconnectPeriod: 0 })
    cleanup(() => early.endAsync(true))
    const doc = { v: 1, dialect: 'draft-07', services: [{ name: 'probe', version: '1', commands: { set: { payload: { type: 'object' } } }, events: {} }] }
    // The other order than a runtime publishes them in, as the broker may hand them over.
    await early.publishAsync('ob/early-1/contract', contractFrame('early-1', 'inst-e', doc), { qos: 1, retain: true })
    expect(gw.registry.contract('early-1')).toBeUndefined()
    const presence = Buffer.from(codec.encode({ v: ENVELOPE_VERSION, kind: 'presence', id: 'p-1', src: 'early-1', inst: 'inst-e', at: Date.now(), payload: { online: true, services: [{ name: 'probe', version: '1', commands: ['set'], events: [] }] } }))
    await early.publishAsync('ob/early-1/status', presence, { qos: 1, retain: true })
    await until(() => gw.registry.contract('early-1') !== undefined, 10_000)
    expect(gw.registry.contract('early-1')).toMatchObject({ instance: 'inst-e', document: doc })
    expect(gw.registry.stats().contracts).toEqual({ recorded: 1, ignored: {} })
  }, 30_000)

  it('a bad payload is 422 VALIDATION_FAILED with the issues a device would give, and never reaches the handler; a good one runs', async () => {
    const gw = await gateway()
    const calls = { n: 0 }
    await device(gw.broker.url, 'probe-2', calls)
    await until(() => current(gw, 'probe-2'), 30_000)

    const named = await post(gw, '/devices/probe-2/commands/probe/1/set', bad)
    expect(named.status).toBe(422)
    expect(named.error).toMatchObject({ code: 'VALIDATION_FAILED', details: { checkedBy: 'gateway' } })
    const any = await post(gw, '/commands/probe/1/set', { ...bad, name: 7 })
    expect([any.status, any.error?.code, any.error?.details?.checkedBy]).toEqual([422, 'VALIDATION_FAILED', 'gateway'])
    expect(calls.n).toBe(0)
    // The device's own answer to the same payload, sent past the gateway's check: the same issues.
    const fromDevice = await gw.runtime.invoke({ service: 'probe', version: '1', command: 'set' }, bad, { device: 'probe-2' }).catch((err: unknown) => err as { code: string; details: { issues: unknown[] } })
    expect((fromDevice as { code: string }).code).toBe('VALIDATION_FAILED')
    // Where, what came and the message; `expected` differs where valibot has none (its integer check).
    const strip = (issues: unknown[] | undefined): unknown[] => (issues ?? []).map((i) => ({ ...(i as object), expected: undefined }))
    expect(strip(named.error!.details!.issues)).toEqual(strip((fromDevice as { details: { issues: unknown[] } }).details.issues))
    expect(named.error!.details!.issues!.map((i) => i.path)).toEqual(['name', 'level', 'level', 'mode'])
    expect(calls.n).toBe(0)

    expect(await post(gw, '/devices/probe-2/commands/probe/1/set', good)).toEqual({ status: 200, result: { ok: true } })
    expect(await post(gw, '/commands/probe/1/set', good)).toEqual({ status: 200, result: { ok: true } })
    expect(calls.n).toBe(2)
  }, 60_000)

  it('without a usable document of the live process (none, an earlier process, schemas ajv cannot compile) the device checks the payload itself', async () => {
    const { gw, calls, anyone } = await announcedBySomeone('probe-3')
    const byDevice = async (): Promise<void> => {
      const r = await post(gw, '/devices/probe-3/commands/probe/1/set', bad)
      expect([r.status, r.error?.code, r.error?.details?.checkedBy]).toEqual([422, 'VALIDATION_FAILED', undefined])
      expect(r.error?.details?.issues?.map((i) => i.path)).toEqual(['name', 'level', 'level', 'mode'])
      expect((await post(gw, '/devices/probe-3/commands/probe/1/set', good)).status).toBe(200)
    }
    // Cleared (as an older runtime never announces one): no document at all.
    await anyone.publishAsync('ob/probe-3/contract', Buffer.alloc(0), { qos: 1, retain: true })
    await until(() => gw.registry.contract('probe-3') === undefined, 30_000)
    await byDevice()
    // A document of another process (a stricter contract the device no longer runs) is not used.
    const strict: ContractPayload = { v: 1, dialect: 'draft-07', services: [{ name: 'probe', version: '1', commands: { set: { payload: false } }, events: {} }] }
    await anyone.publishAsync('ob/probe-3/contract', contractFrame('probe-3', 'earlier', strict), { qos: 1, retain: true })
    await until(() => gw.registry.contract('probe-3')?.instance === 'earlier', 30_000)
    await byDevice()
    // The live process's document, with schemas ajv refuses to compile.
    const inst = gw.registry.get('probe-3')!.instance!
    for (const payload of [{ type: 'nonsense' }, { $ref: 'http://elsewhere.invalid/schema.json' }, { $schema: 'https://json-schema.org/draft/2020-12/schema' }]) {
      const hostile = { v: 1, dialect: 'draft-07', services: [{ name: 'probe', version: '1', commands: { set: { payload } }, events: {} }] }
      await anyone.publishAsync('ob/probe-3/contract', contractFrame('probe-3', inst, hostile), { qos: 1, retain: true })
      await until(() => JSON.stringify(gw.registry.contract('probe-3')?.document.services[0]?.commands.set?.payload) === JSON.stringify(payload), 30_000)
      await byDevice()
    }
    expect(calls.n).toBe(5)
  }, 60_000)

  // A taken-over device announces schemas made to hold the gateway: a backtracking pattern where
  // only a $ref finds it (under a word that is no keyword), and uniqueItems over a caller's long
  // array (ajv compares every pair). Before: the pattern ran on the gateway (a 31-character string
  // held it 10 s, and every MQTT and HTTP client with it; 41 here would hold it for days), and a
  // 30,000-item array held it 6 s, then the gateway refused a duplicate itself. Now neither runs
  // there: the device gets the call and answers.
  it('a document made to hold the gateway (a pattern behind a $ref, uniqueItems over a long array, a schema of thousands of objects, $refs that double at each step) runs none of that there: the device checks', async () => {
    const { gw, anyone } = await announcedBySomeone('probe-5')
    const inst = gw.registry.get('probe-5')!.instance!
    const announce = async (payload: unknown): Promise<void> => {
      const hostile = { v: 1, dialect: 'draft-07', services: [{ name: 'probe', version: '1', commands: { set: { payload } }, events: {} }] }
      await anyone.publishAsync('ob/probe-5/contract', contractFrame('probe-5', inst, hostile), { qos: 1, retain: true })
      await until(() => JSON.stringify(gw.registry.contract('probe-5')?.document.services[0]?.commands.set?.payload) === JSON.stringify(payload), 30_000)
    }
    const byDevice = async (body: unknown): Promise<void> => {
      const r = await post(gw, '/devices/probe-5/commands/probe/1/set', body)
      expect([r.status, r.error?.code, r.error?.details?.checkedBy]).toEqual([422, 'VALIDATION_FAILED', undefined])
    }
    await announce({ type: 'object', properties: { name: { $ref: '#/x' } }, x: { type: 'string', pattern: '^(a+)+$' } })
    await byDevice({ name: `${'a'.repeat(40)}!` })
    await announce({ type: 'object', properties: { name: { $ref: '#/x' } }, x: { type: 'object', patternProperties: { '^(a+)+$': { type: 'number' } } } })
    await byDevice({ name: { [`${'a'.repeat(40)}!`]: 'text' } })
    // As many items as the HTTP body limit lets through, all different but the last.
    await announce({ type: 'array', uniqueItems: true })
    await byDevice([...Array.from({ length: 25_000 }, (_, i) => [i]), [0]])
    // 30 definitions that each name the next twice (2 KB, 2^30 to check: the gateway ran out of
    // memory on one call): the device checks.
    const definitions: Record<string, unknown> = { d29: { type: 'object', required: ['zz'] } }
    for (let i = 28; i >= 0; i--) definitions[`d${i}`] = { allOf: [{ $ref: `#/definitions/d${i + 1}` }, { $ref: `#/definitions/d${i + 1}` }] }
    await announce({ definitions, type: 'object', properties: { name: { $ref: '#/definitions/d0' } } })
    await byDevice({ name: {} })
    // A definition named twice: the gateway checks through it.
    const leaf = { type: 'object', properties: Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`q${i}`, { type: 'number', maximum: i }])) }
    await announce({ definitions: { leaf }, type: 'object', properties: { a: { $ref: '#/definitions/leaf' }, b: { $ref: '#/definitions/leaf' } } })
    const deep = await post(gw, '/devices/probe-5/commands/probe/1/set', { b: { q49: 1_000 } })
    expect([deep.status, deep.error?.details?.checkedBy, deep.error?.details?.issues?.[0]?.path]).toEqual([422, 'gateway', 'b.q49'])
    // A schema too large to compile on the gateway's event loop: the device checks.
    await announce({ type: 'object', properties: Object.fromEntries(Array.from({ length: 3_000 }, (_, i) => [`q${i}`, { type: 'number' }])) })
    await byDevice({ name: 1 })
    // The gateway still checks what it may: a payload of the wrong type.
    await announce({ type: 'object', properties: { name: { type: 'string' } } })
    const wrong = await post(gw, '/devices/probe-5/commands/probe/1/set', { name: 1 })
    expect([wrong.status, wrong.error?.details?.checkedBy]).toEqual([422, 'gateway'])
    expect((await fetch(`${gw.http!.url}/healthz`)).status).toBe(200)
  }, 60_000)

  it('sends the document once per run, and again only to a broker that kept no session for it', async () => {
    const port = await freePort()
    const first = await gateway({ port })
    const calls = { n: 0 }
    await device(first.broker.url, 'probe-4', calls)
    await until(() => current(first, 'probe-4'), 30_000, 'document of the first run')
    // A drill keeps the broker's state: the device's session is there, its document too.
    await first.interrupt(200)
    await until(() => first.registry.get('probe-4')?.online === true, 30_000, 'device back after the drill')
    // Anything the device sent after reconnecting has arrived by the time its reply has (the
    // gateway's own client may take a moment longer to be back: 503 until then).
    const end = Date.now() + 30_000
    for (let r = await post(first, '/devices/probe-4/commands/probe/1/set', good); r.status !== 200; r = await post(first, '/devices/probe-4/commands/probe/1/set', good)) {
      expect(r.status, JSON.stringify(r)).toBe(503)
      expect(Date.now(), `still 503 after 30 s: ${JSON.stringify(r)}`).toBeLessThan(end)
      await new Promise((done) => setTimeout(done, 50))
    }
    expect(first.registry.stats().contracts.recorded).toBe(1)
    // A new gateway on the port, its broker without the device's session: the device announces its document again.
    await first.close()
    const second = await gateway({ port })
    await until(() => current(second, 'probe-4'), 30_000, 'document announced to the second gateway')
    expect((await post(second, '/devices/probe-4/commands/probe/1/set', bad)).error?.details?.checkedBy).toBe('gateway')
    expect(calls.n).toBe(1)
  }, 120_000)

  it("with authentication on, a device publishes its own document and no other device's, nor anything but a document on its contract topic", async () => {
    const gw = await gateway({ auth: true })
    const a = gw.devices.add('dev-a', 'device')
    const b = gw.devices.add('dev-b', 'device')
    await device(gw.broker.url, 'dev-a', { n: 0 }, { username: 'dev-a', password: a.secret })
    await until(() => current(gw, 'dev-a'), 30_000)
    const own = gw.registry.contract('dev-a')!
    expect(gw.auth!.stats().deniedPublish).toEqual({})
    const attempts: { topic: string; frame: Buffer; reason: string }[] = [
      { topic: 'ob/dev-a/contract', frame: contractFrame('dev-b', 'b', { v: 1, dialect: 'draft-07', services: [] }), reason: 'namespace' },
      { topic: 'ob/dev-b/contract', frame: contractFrame('dev-a', 'b', { v: 1, dialect: 'draft-07', services: [] }), reason: 'sender' },
      { topic: 'ob/dev-b/contract', frame: contractFrame('dev-b', 'b', { online: true, services: [] }, 'presence'), reason: 'layout' },
      { topic: 'ob/dev-b/contract/x', frame: contractFrame('dev-b', 'b', { v: 1, dialect: 'draft-07', services: [] }), reason: 'layout' },
    ]
    for (const [i, t] of attempts.entries()) {
      const c = await mqtt.connectAsync(gw.broker.url, { clientId: 'dev-b', username: 'dev-b', password: b.secret, reconnectPeriod: 0 })
      cleanup(() => c.endAsync(true))
      const closed = new Promise<void>((r) => c.once('close', () => r()))
      c.publish(t.topic, t.frame, { qos: 1, retain: true })
      await closed
      expect(Object.values(gw.auth!.stats().deniedPublish).reduce((x, y) => x + y, 0), t.topic).toBe(i + 1)
      expect(gw.auth!.stats().deniedPublish[t.reason], `${t.topic} (${t.reason})`).toBeGreaterThanOrEqual(1)
    }
    expect(gw.registry.contract('dev-a')).toEqual(own)
    expect(gw.registry.contract('dev-b')).toBeUndefined()
  }, 60_000)

  it('an oversized or malformed document is ignored and counted; the gateway goes on checking and serving', async () => {
    const gw = await gateway()
    const calls = { n: 0 }
    await device(gw.broker.url, 'probe-5', calls)
    await until(() => current(gw, 'probe-5'), 30_000)
    const own = gw.registry.contract('probe-5')!
    const inst = own.instance
    const attacker = await mqtt.connectAsync(gw.broker.url, { clientId: 'attacker', reconnectPeriod: 0 })
    cleanup(() => attacker.endAsync(true))
    const open = { v: 1, dialect: 'draft-07', services: [{ name: 'probe', version: '1', commands: { set: { payload: true } }, events: {} }] }
    const frames: { topic: string; payload: Buffer; reason: string }[] = [
      { topic: 'ob/probe-5/contract', payload: contractFrame('probe-5', inst, { ...open, pad: 'x'.repeat(300 * 1024) }), reason: 'too-large' },
      { topic: 'ob/probe-5/contract', payload: Buffer.from('not cbor \xff\xfe'), reason: 'malformed' },
      { topic: 'ob/probe-5/contract', payload: contractFrame('probe-5', inst, { online: true, services: [] }, 'presence'), reason: 'kind' },
      { topic: 'ob/probe-5/contract', payload: contractFrame('attacker', inst, open), reason: 'sender' },
      { topic: 'ob/probe-5/contract', payload: contractFrame('probe-5', inst, { services: 'all of them' }), reason: 'payload' },
      { topic: 'ob/probe-5/contract', payload: contractFrame('probe-5', inst, [open]), reason: 'payload' },
      { topic: 'ob/stranger/contract', payload: contractFrame('stranger', 's', open), reason: 'unknown' },
    ]
    for (const f of frames) await attacker.publishAsync(f.topic, f.payload, { qos: 1, retain: true })
    const expected: Record<string, number> = {}
    for (const f of frames) expected[f.reason] = (expected[f.reason] ?? 0) + 1
    await until(() => Object.values(gw.registry.stats().contracts.ignored).reduce((x, y) => x + y, 0) === frames.length, 30_000)
    expect(gw.registry.stats().contracts).toEqual({ recorded: 1, ignored: expected })
    expect(gw.registry.contract('probe-5')).toEqual(own)
    expect(gw.registry.contract('stranger')).toBeUndefined()
    expect((await post(gw, '/devices/probe-5/commands/probe/1/set', bad)).error?.details?.checkedBy).toBe('gateway')
    expect((await post(gw, '/devices/probe-5/commands/probe/1/set', good)).status).toBe(200)
    expect(calls.n).toBe(1)
  }, 60_000)
})

describe('converted schemas never refuse what a device accepts', () => {
  const shape = v.object({ id: v.string() })
  // valid: the device takes it; open: the device may refuse it, the gateway cannot tell (JSON has no Date, BigInt or bytes).
  const cases: { schema: v.GenericSchema; valid: unknown[]; invalid: unknown[]; open?: unknown[] }[] = [
    { schema: v.pipe(v.string(), v.trim(), v.maxLength(3)), valid: ['  abc  '], invalid: [3] },
    { schema: v.pipe(v.string(), v.toLowerCase(), v.regex(/^[a-z]+$/)), valid: ['ABC'], invalid: [null] },
    { schema: v.pipe(v.string(), v.regex(/^abc$/i)), valid: ['ABC'], invalid: [[]] },
    { schema: v.pipe(v.string(), v.minLength(2), v.maxLength(2)), valid: ['😀', 'ab'], invalid: ['a', 'abc'] },
    { schema: v.pipe(v.string(), v.email()), valid: ['a@b.co'], invalid: [1] },
    { schema: v.object({ n: v.fallback(v.number(), 0) }), valid: [{}, { n: 'x' }], invalid: ['x'] },
    { schema: v.variant('t', [v.object({ t: v.literal('a'), x: v.number() }), v.object({ t: v.literal('b') })]), valid: [{ t: 'a', x: 1 }, { t: 'b', x: 'y' }], invalid: [{ t: 'c' }] },
    { schema: v.object({ a: v.optional(v.string(), 'd'), b: v.nullish(v.number()), c: v.exactOptional(v.boolean()) }), valid: [{}, { a: 'x', b: null }], invalid: [{ a: 1 }] },
    { schema: v.object({ when: v.date(), big: v.bigint(), raw: v.instance(Uint8Array), any: v.custom(() => true) }), valid: [], open: [{ when: 1, big: 'x', raw: [], any: null }], invalid: [{}] },
    { schema: v.pipe(v.string(), v.transform(Number), v.minValue(5)), valid: ['7'], open: ['1'], invalid: [7] },
    { schema: v.looseObject({ a: v.number() }), valid: [{ a: 1, b: 2 }], invalid: [{ a: '1' }] },
    { schema: v.strictObject({ a: v.number() }), valid: [{ a: 1 }], invalid: [{ a: 1, b: 2 }] },
    { schema: v.tuple([v.string()]), valid: [['a', 2]], invalid: [[1]] },
    { schema: v.record(v.string(), v.array(shape)), valid: [{ k: [{ id: 'x', more: 1 }] }], invalid: [{ k: [{}] }] },
    { schema: v.pipe(v.number(), v.multipleOf(0.5), v.maxValue(10)), valid: [1.5, 10], invalid: [0.3, 11] },
    { schema: v.pipe(v.string(), v.metadata({ title: 'T', type: 'number', pattern: '^$' }), v.examples([1n] as never)), valid: ['x'], invalid: [1] },
  ]

  it('the gateway takes every valid input and refuses the invalid ones the schema can express', async () => {
    const commands = Object.fromEntries(cases.map((c, i) => [`c${i}`, { payload: c.schema, result: v.unknown() }]))
    const contract = defineContract({ name: 'many', version: '1', commands })
    const handlers = Object.fromEntries(cases.map((_, i) => [`c${i}`, () => null]))
    const made = await buildContractDocument([defineService(contract, { commands: handlers as never })])
    const check = createPayloadCheck()
    const schemas = made!.document.services[0]!.commands
    for (const [i, c] of cases.entries()) {
      const schema = schemas[`c${i}`]!.payload
      for (const input of c.valid) {
        expect(safeParse(c.schema, input).success, `c${i} device takes ${JSON.stringify(input)}`).toBe(true)
        expect(() => check.check(schema, 'draft-07', input, `c${i}`), `c${i} gateway takes ${JSON.stringify(input)}`).not.toThrow()
      }
      for (const input of c.open ?? []) expect(() => check.check(schema, 'draft-07', input, `c${i}`), `c${i} gateway takes ${JSON.stringify(input)}`).not.toThrow()
      for (const input of c.invalid) {
        expect(safeParse(c.schema, input).success, `c${i} device refuses ${JSON.stringify(input)}`).toBe(false)
        expect(() => check.check(schema, 'draft-07', input, `c${i}`), `c${i} gateway refuses ${JSON.stringify(input)}`).toThrow(/is invalid/)
      }
    }
    // Nothing to announce without a command or an event.
    expect(await buildContractDocument([])).toBeUndefined()
    expect(await buildContractDocument([defineService(defineContract({ name: 'quiet', version: '1' }), { commands: {} })])).toBeUndefined()
  })
})
