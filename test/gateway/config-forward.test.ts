// The `forward:` and `commands:` sections of the gateway's config file, loaded from real files:
// defaults, what each mistake says (key path, what is accepted), and the redacted print-out.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { formatConfig, loadGatewayConfig } from '../../gateway/config/load-config.js'
import { allowedBy } from '../../gateway/commands/command-router.js'
import { createRouter } from '../../gateway/forward/router.js'
import { createEnvelopeCodec } from '../../runtime/wire/codec.js'
import { ErrorCode, isOutpostError, type OutpostError } from '../../runtime/errors.js'

const dir = mkdtempSync(path.join(tmpdir(), 'outpost-config-fwd-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
let n = 0
const file = (text: string): string => {
  const f = path.join(dir, `f${++n}.yaml`)
  writeFileSync(f, text)
  return f
}
const errorOf = (text: string): OutpostError => {
  try {
    loadGatewayConfig({ file: file(text), env: {} })
  } catch (err) {
    if (isOutpostError(err)) return err
    throw err
  }
  throw new Error('loaded without an error')
}

const TARGETS = `
forward:
  targets:
    cloud:
      type: nats
      servers: nats://127.0.0.1:4222
      user: gw
      pass: nats-secret-pass
      stream: { name: OUTPOST_EVENTS }
    warehouse:
      type: rabbitmq
      url: amqp://guest:rabbit-secret@127.0.0.1:5672/
      exchange: { name: outpost.events }
      queue: { name: all, bindingKey: '#' }
      encoding: json
      whenFull: refuse
      maxBytes: 1048576
  routes:
    - events: [thermo/1/+]
      to: [cloud, warehouse]
    - devices: [line-*]
      queues: [capture]
      to: [warehouse]
commands:
  offline: hold
  nats: { servers: [nats://127.0.0.1:4222], token: nats-command-token, allow: ['+/thermo/1/+'] }
`

describe('forward and commands config', () => {
  it('applies the defaults of every target and route', () => {
    const c = loadGatewayConfig({ file: file(TARGETS), env: {} })
    expect(c.forward?.targets.cloud).toEqual({
      type: 'nats', servers: ['nats://127.0.0.1:4222'], user: 'gw', pass: 'nats-secret-pass', encoding: 'cbor', window: 256, confirmTimeoutMs: 10_000, maxBytes: 256 * 1024 * 1024, whenFull: 'drop-oldest',
      stream: { name: 'OUTPOST_EVENTS', subjects: ['outpost.evt.>'], create: true, duplicateWindowMs: 120_000 },
      subject: 'outpost.evt.{device}.{service}.{version}.{event}',
    })
    expect(c.forward?.targets.warehouse).toMatchObject({ type: 'rabbitmq', encoding: 'json', whenFull: 'refuse', maxBytes: 1_048_576, exchange: { name: 'outpost.events', type: 'topic', create: true }, routingKey: '{device}.{service}.{version}.{event}' })
    expect(c.forward?.routes).toEqual([
      { events: ['thermo/1/+'], devices: ['*'], to: ['cloud', 'warehouse'] },
      { events: ['#'], devices: ['line-*'], queues: ['capture'], to: ['warehouse'] },
    ])
    expect(c.commands).toMatchObject({ offline: 'hold', timeoutMs: 10_000, http: { enabled: true, allow: ['#'] }, nats: { subject: 'outpost.cmd', queueGroup: 'outpost-gateway', allow: ['+/thermo/1/+'] } })
  })

  it('without a commands section: HTTP commands on, everything allowed, no NATS or RabbitMQ', () => {
    const c = loadGatewayConfig({ file: file('mqtt: { port: 0 }\n'), env: {} })
    expect(c.forward).toBeUndefined()
    expect(c.commands).toEqual({ timeoutMs: 10_000, maxTimeoutMs: 300_000, offline: 'fail', maxPending: 4_096, http: { enabled: true, allow: ['#'] } })
  })

  it('redacts passwords and tokens in --print-config, also a password inside a NATS server URL', () => {
    const text = formatConfig(loadGatewayConfig({ file: file(TARGETS), env: {} }))
    for (const secret of ['nats-secret-pass', 'rabbit-secret', 'nats-command-token']) expect(text).not.toContain(secret)
    expect(text).toContain('amqp://guest:<redacted>@127.0.0.1:5672/')
    const inUrls = formatConfig(loadGatewayConfig({
      file: file(`forward: { targets: { c: { type: nats, servers: ['nats://fwd:in-url-pass-1@127.0.0.1:4222'], stream: { name: S } } } }\ncommands: { nats: { servers: 'nats://cmd:in-url-pass-2@127.0.0.1:4222' } }\n`),
      env: {},
    }))
    for (const secret of ['in-url-pass-1', 'in-url-pass-2']) expect(inUrls).not.toContain(secret)
    expect(inUrls).toContain('nats://fwd:<redacted>@127.0.0.1:4222')
    expect(inUrls).toContain('nats://cmd:<redacted>@127.0.0.1:4222')
  })

  it.each([
    ['forward: { targets: { c: { type: kafka, servers: x } } }', 'forward.targets.c'],
    ['forward: { targets: { c: { type: nats, servers: http://x, stream: { name: S } } } }', 'forward.targets.c.servers'],
    ['forward: { targets: { c: { type: nats, servers: nats://x:4222 } } }', 'forward.targets.c.stream: missing'],
    ['forward: { targets: { c: { type: nats, servers: nats://x:4222, stream: { name: S }, whenFull: drop } } }', 'expected drop-oldest, drop-newest or refuse'],
    ['forward: { targets: { c: { type: nats, servers: nats://x:4222, stream: { name: S }, subject: "a.{host}" } } }', 'expected only {device}, {service}, {version} and {event}'],
    // Before: passed the check, and every event became a dead letter ("invalid subject").
    ['forward: { targets: { c: { type: nats, servers: nats://x:4222, stream: { name: S }, subject: "a.*.{device}.{service}.{version}.{event}" } } }', 'forward.targets.c.subject: expected a subject events can be published to (this one has a wildcard)'],
    ['forward: { targets: { c: { type: nats, servers: nats://x:4222, stream: { name: S }, subject: "a.{device}.{service}.{version}.{event}.>" } } }', 'forward.targets.c.subject: expected a subject events can be published to (this one has a wildcard)'],
    ['forward: { targets: { c: { type: nats, servers: nats://x:4222, stream: { name: S }, subject: "a..{device}.{event}" } } }', 'forward.targets.c.subject: expected a subject events can be published to (this one has an empty token)'],
    ['forward: { targets: { c: { type: nats, servers: nats://x:4222, stream: { name: S } } }, routes: [{ to: [cloud] }] }', 'forward.routes[0].to: unknown target "cloud"; expected one of c'],
    ['forward: { targets: { c: { type: nats, servers: nats://x:4222, stream: { name: S } } }, routes: [{ events: [thermo/#/x], to: [c] }] }', "'#' may only be the last level"],
    ['forward: { targets: { c: { type: rabbitmq, url: "amqp://h", exchange: { name: e }, window: 0 } } }', 'forward.targets.c.window'],
    ['commands: { offline: later }', 'commands.offline: expected fail or hold'],
    ['commands: { http: { allow: [thermo] } }', 'expected 4 levels'],
    ['commands: { timeoutMs: 20000, maxTimeoutMs: 1000 }', 'commands.timeoutMs: 20000 is more than commands.maxTimeoutMs'],
  ])('names the key: %s', (text, expected) => {
    const err = errorOf(text)
    expect(err.code).toBe(ErrorCode.INVALID_CONFIG)
    expect(err.message).toContain(expected)
  })
})

describe('routes and allow rules', () => {
  const codec = createEnvelopeCodec()
  const frame = (src: string, service: string, name: string): Uint8Array =>
    codec.encode({ v: 1, kind: 'event', id: `01J${src}${name}`.padEnd(26, '0').slice(0, 26), src, inst: 'i', at: 5, service, version: '1', name, payload: { n: 1, raw: new Uint8Array([1, 2]) }, traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' })

  it('route events by filter, device pattern and queue, once per target, with the envelope in headers', () => {
    const c = loadGatewayConfig({ file: file(TARGETS), env: {} })
    const router = createRouter(c.forward!)
    const r = router.route('ob/t1/evt/thermo/1/reading', frame('t1', 'thermo', 'reading'), 7)
    expect('rows' in r && r.rows.map((x) => [x.target, x.subject, x.contentType])).toEqual([
      ['cloud', 'outpost.evt.t1.thermo.1.reading', 'application/cbor'],
      ['warehouse', 't1.thermo.1.reading', 'application/json'],
    ])
    const rows = 'rows' in r ? r.rows : []
    expect(rows[0]!.headers).toMatchObject({ 'Outpost-Device': 't1', 'Outpost-Service': 'thermo', 'Outpost-Event': 'reading', 'Outpost-At': '5', traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' })
    expect(JSON.parse(Buffer.from(rows[1]!.body).toString())).toMatchObject({ device: 't1', event: 'reading', payload: { n: 1, raw: 'AQI=' } })
    // A queue's result events from a matching device; not another event of that device.
    expect('rows' in router.route('ob/line-2/evt/vision/1/capture.completed', frame('line-2', 'vision', 'capture.completed'), 7)).toBe(true)
    expect(router.route('ob/line-2/evt/vision/1/other', frame('line-2', 'vision', 'other'), 7)).toEqual({ skipped: 'no-route' })
    expect(router.route('ob/t1/cmd/x/thermo/1/read', new Uint8Array(), 7)).toEqual({ skipped: 'not-an-event' })
    // Claimed in another device's name, or not an envelope: not forwarded.
    expect(router.route('ob/t2/evt/thermo/1/reading', frame('t1', 'thermo', 'reading'), 7)).toEqual({ dropped: 'sender' })
    expect(router.route('ob/t2/evt/thermo/1/reading', new Uint8Array([0xff, 0x00]), 7)).toEqual({ dropped: 'malformed' })
  })

  it('allow rules: a named device or a wildcard; an unnamed call only through a wildcard device level', () => {
    expect(allowedBy(['+/thermo/1/+'], { device: 't1', service: 'thermo', version: '1', command: 'read' })).toBe(true)
    expect(allowedBy(['+/thermo/1/+'], { service: 'thermo', version: '1', command: 'read' })).toBe(true)
    expect(allowedBy(['t1/thermo/1/read'], { service: 'thermo', version: '1', command: 'read' })).toBe(false)
    expect(allowedBy(['t1/#'], { device: 't2', service: 'thermo', version: '1', command: 'read' })).toBe(false)
    expect(allowedBy([], { device: 't1', service: 'thermo', version: '1', command: 'read' })).toBe(false)
  })
})
