// Cloud callers to device commands, attacked from outside: a gateway process (`outpost gateway
// --config`, authentication on, an HTTP token, the NATS and RabbitMQ front ends on the real
// servers) and a real device process (`outpost device thermo`) behind it. Hostile HTTP requests,
// NATS requests and RabbitMQ messages each get a typed error in their protocol (or, with nobody to
// answer, are dropped and logged), the gateway never goes down, and a good command afterwards
// still works.
// Defects found here: a payload of about 1 MiB (within the body limit) became a frame over the
// broker's packet limit: the broker closed the gateway's own connection, whose client sent it
// again at every reconnect, and from then on every command failed with BRIDGE_UNAVAILABLE until
// the gateway was restarted; payloads over the 256 KiB a device reads timed out after the whole
// deadline; a payload nested deeper than 64 levels was a 500 INVALID_ENVELOPE; `?timeout=500` (a
// typo) was ignored and `?timeoutMs=` given twice took the first; and after a 413 the client's
// next request on the same connection failed with "other side closed".
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import amqp, { type Channel, type ChannelModel, type ConsumeMessage, type Options } from 'amqplib'
import { connect as natsConnect, headers as natsHeaders, type NatsConnection } from '@nats-io/transport-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startProcess, type TestProcess } from '../helpers/device-process.js'
import { until } from '../helpers/wait.js'
import { HTTP_TOKEN, startGatewayProcess, type GatewayProcess } from './gateway-attack-process.js'

const NATS_URL = 'nats://127.0.0.1:4222'
const AMQP_URL = 'amqp://guest:guest@127.0.0.1:5672'
const DEVICE = 'thermo-1'
const tag = randomBytes(4).toString('hex')
const SUBJECT = `cmdattack.${tag}`
const QUEUE = `cmdattack.${tag}`

interface ErrorBody {
  error?: { code: string; message: string; details?: unknown }
  result?: { value: number; unit: 'C' | 'F'; at: number }
}

let gw: GatewayProcess
let device: TestProcess
let dataDir: string

/** POST with the token (the body sent in `chunks`, with no length, when they are given); status and JSON body (undefined when there is none). */
async function post(route: string, body?: string | Uint8Array, headers: Record<string, string> = {}, chunks?: string[]): Promise<{ status: number; body: ErrorBody | undefined }> {
  const stream = chunks === undefined ? undefined : new ReadableStream<Uint8Array>({
    start(c) {
      for (const chunk of chunks) c.enqueue(Buffer.from(chunk))
      c.close()
    },
  })
  const res = await fetch(gw.httpUrl + route, { method: 'POST', body: stream ?? body, headers: { authorization: `Bearer ${HTTP_TOKEN}`, ...headers }, ...(stream === undefined ? {} : { duplex: 'half' }) } as RequestInit)
  const text = await res.text()
  return { status: res.status, body: text === '' ? undefined : (JSON.parse(text) as ErrorBody) }
}

/** One raw HTTP/1.1 request (the path exactly as written, nothing normalized), its status and body; `length`: the Content-Length it claims (the body's by default). */
async function rawHttp(requestLine: string, body = '{}', length = Buffer.byteLength(body)): Promise<{ status: number; body: string }> {
  const { port } = new URL(gw.httpUrl)
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(port), '127.0.0.1', () =>
      s.write(`${requestLine}\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer ${HTTP_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\n\r\n${body}`),
    )
    let text = ''
    s.setEncoding('utf8')
    s.on('data', (d: string) => (text += d))
    s.on('end', () => resolve({ status: Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1] ?? NaN), body: text.split('\r\n\r\n').slice(1).join('\r\n\r\n') }))
    s.on('error', reject)
  })
}

const READ = `/devices/${DEVICE}/commands/thermo/1/read`

/** A good command through HTTP: the device's reading. */
async function goodHttp(unit: 'C' | 'F' = 'C'): Promise<void> {
  const r = await post(READ, JSON.stringify({ unit }))
  expect(r.status, JSON.stringify(r.body)).toBe(200)
  expect(r.body?.result?.unit).toBe(unit)
}

/** No line of the process looks like a stack trace. */
function expectNoStackTrace(lines: readonly string[]): void {
  expect(lines.filter((l) => /^\s+at .+:\d+:\d+\)?$/.test(l) || l.includes('"stack":') || /\\n\s+at /.test(l))).toEqual([])
}

/** JSON nested `depth` levels deep in arrays, as text. */
const deepArrays = (depth: number): string => '['.repeat(depth) + ']'.repeat(depth)

beforeAll(async () => {
  gw = await startGatewayProcess({
    devices: [DEVICE],
    extra: `commands:\n  nats: { servers: ${NATS_URL}, subject: ${SUBJECT}, queueGroup: q${tag} }\n  rabbitmq: { url: '${AMQP_URL}', queue: ${QUEUE}, prefetch: 16 }\n`,
  })
  dataDir = mkdtempSync(path.join(tmpdir(), 'outpost-cmd-attack-'))
  const { port } = new URL(gw.mqttUrl)
  device = startProcess('bin/outpost.js', ['device', 'thermo', '--id', DEVICE, '--url', `mqtt://${DEVICE}:${encodeURIComponent(gw.secrets[DEVICE]!)}@127.0.0.1:${port}`, '--log-format', 'json'], { OUTPOST_DATA_DIR: dataDir, OUTPOST_SAMPLE_MS: '3600000' })
  await device.waitFor('ready', 60_000)
  // Online in the gateway's registry once a command goes through.
  for (const end = Date.now() + 30_000; ; ) {
    const r = await post(READ, '{}')
    if (r.status === 200) break
    if (Date.now() > end) throw new Error(`device not reachable: ${JSON.stringify(r)}`)
    await new Promise((res) => setTimeout(res, 200))
  }
}, 90_000)

afterAll(async () => {
  await device?.kill('SIGTERM')
  await gw?.stop()
  // After the gateway: its front end would declare the queue again.
  const conn = await amqp.connect(AMQP_URL)
  const ch = await conn.createChannel()
  await ch.deleteQueue(QUEUE).catch(() => {})
  await conn.close()
  rmSync(dataDir, { recursive: true, force: true })
}, 60_000)

describe('cloud commands under attack', () => {
  it('HTTP: hostile bodies, content types, query strings and names are typed errors; the gateway and its link to the devices stay up', async () => {
    const bad = async (what: string, r: Promise<{ status: number; body: ErrorBody | undefined }>, status: number, text: string | RegExp, code = 'BAD_ARGUMENT'): Promise<void> => {
      const got = await r
      expect(got.status, `${what}: ${JSON.stringify(got.body)}`).toBe(status)
      expect(got.body?.error?.code, what).toBe(code)
      if (typeof text === 'string') expect(got.body?.error?.message, what).toContain(text)
      else expect(got.body?.error?.message, what).toMatch(text)
    }
    await bad('not JSON', post(READ, '{unit: C}'), 400, 'the request body is not JSON')
    await bad('not UTF-8', post(READ, new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d])), 400, 'not UTF-8')
    await bad('XML', post(READ, '<read unit="C"/>', { 'content-type': 'application/xml' }), 400, 'not JSON')
    await bad('a form', post(READ, 'unit=C', { 'content-type': 'application/x-www-form-urlencoded' }), 400, 'not JSON')
    // Over the limit, the body is read to its end before the 413, so the answer arrives: answered
    // while the client still sent, it now and then got "write EPIPE" instead (a CI run).
    for (let i = 0; i < 5; i++) await bad('2 MB', post(READ, 'x'.repeat(2 * 1024 * 1024)), 413, 'larger than 1048576 bytes')
    // A body that claims more than is worth reading is answered at once: this one never comes.
    const claimed = await rawHttp(`POST ${READ} HTTP/1.1`, '', 1024 ** 3)
    expect([claimed.status, (JSON.parse(claimed.body) as ErrorBody).error?.code]).toEqual([413, 'BAD_ARGUMENT'])
    // The connection the 413 came on is closed: the next requests (through the same client pool) are answered.
    for (let i = 0; i < 3; i++) await goodHttp()
    // A body without Content-Length (chunked, as a client that streams sends it), and none at all
    // (the payload is then {}): both were 500 INTERNAL.
    const streamed = await post(READ, undefined, {}, ['{"un', 'it":"F"}'])
    expect([streamed.status, streamed.body?.result?.unit]).toEqual([200, 'F'])
    const none = await post(READ)
    expect([none.status, none.body?.result?.unit]).toEqual([200, 'C'])
    await bad('2 MB chunked', post(READ, undefined, {}, Array.from({ length: 32 }, () => 'x'.repeat(64 * 1024))), 413, 'larger than 1048576 bytes')
    await goodHttp()

    // Within the body limit, but no device reads it: refused before it reaches the broker.
    const big = JSON.stringify({ unit: 'C', pad: 'x'.repeat(1024 * 1024 - 64) })
    await bad('a 1 MiB payload', post(READ, big), 400, /^the payload takes \d+ bytes as sent to a device \(CBOR\); at most 258048 are taken/)
    await bad('a payload that grows as CBOR', post(READ, JSON.stringify({ unit: 'C', f: Array.from({ length: 60_000 }, () => 0.1) })), 400, 'the payload takes')
    await goodHttp()
    await bad('300 KiB', post(READ, JSON.stringify({ unit: 'C', pad: 'x'.repeat(300 * 1024) })), 400, 'at most 258048')
    await bad('100,000 nested arrays', post(READ, deepArrays(100_000)), 400, 'the payload nests arrays or objects more than 63 levels deep')
    await bad('100,000 nested objects', post(READ, '{"a":'.repeat(100_000) + '1' + '}'.repeat(100_000)), 400, 'more than 63 levels')
    await bad('64 levels', post(READ, JSON.stringify({ unit: 'C', x: JSON.parse(deepArrays(63)) as unknown })), 400, 'more than 63 levels')
    // 63 levels travel; the device's contract takes the payload (unknown keys are left out).
    const deepest = await post(READ, JSON.stringify({ unit: 'F', x: JSON.parse(deepArrays(62)) as unknown }))
    expect([deepest.status, deepest.body?.result?.unit]).toEqual([200, 'F'])

    // __proto__ as a key is data, not the prototype: the unit it tries to slip in is not taken.
    const proto = await post(READ, '{"__proto__":{"unit":"F"}}')
    expect([proto.status, proto.body?.result?.unit]).toEqual([200, 'C'])
    const both = await post(READ, '{"unit":"F","__proto__":{"unit":"C"},"constructor":{"prototype":{"unit":"C"}}}')
    expect([both.status, both.body?.result?.unit]).toEqual([200, 'F'])
    // The device's contract answers payloads of the wrong shape, as 422 with the issue.
    await bad('an array payload', post(READ, '[1,2]'), 422, /payload of thermo\.read .*invalid/, 'VALIDATION_FAILED')
    await bad('a wrong unit', post(READ, '{"unit":"K"}'), 422, /payload of thermo\.read .*invalid/, 'VALIDATION_FAILED')
    // JSON is JSON whatever the content type says.
    const plain = await post(READ, '{"unit":"F"}', { 'content-type': 'text/plain' })
    expect([plain.status, plain.body?.result?.unit]).toEqual([200, 'F'])

    // Query strings.
    await bad('a misspelt parameter', post(`${READ}?timeout=500`, '{}'), 400, 'query parameter "timeout" is not taken; expected timeoutMs or offline')
    await bad('timeoutMs twice', post(`${READ}?timeoutMs=1000&timeoutMs=abc`, '{}'), 400, 'query parameter timeoutMs is given 2 times')
    await bad('offline twice', post(`${READ}?offline=hold&offline=fail`, '{}'), 400, 'query parameter offline is given 2 times')
    await bad('timeoutMs not a number', post(`${READ}?timeoutMs=soon`, '{}'), 400, 'timeoutMs "soon" is not a whole number')
    await bad('timeoutMs too long', post(`${READ}?timeoutMs=999999999`, '{}'), 400, 'timeout 999999999 ms is not accepted')
    await bad('offline maybe', post(`${READ}?offline=maybe`, '{}'), 400, 'expected fail or hold')
    await bad('a query of 1,000 parameters', post(`${READ}?${Array.from({ length: 1_000 }, (_, i) => `p${i}=1`).join('&')}`, '{}'), 400, 'is not taken')
    // Past Node's header limit: refused before any route runs.
    expect((await post(`${READ}?timeoutMs=${'9'.repeat(70_000)}`, '{}')).status).toBe(431)

    // Names: traversal, encoded slashes, wildcards, control characters, length.
    const names: [string, string][] = [
      [`/devices/..%2F..%2F${DEVICE}/commands/thermo/1/read`, 'device "../../thermo-1" is not a name'],
      [`/devices/${DEVICE}/commands/..%2Fhealthz/1/read`, 'service "../healthz" is not a name'],
      [`/devices/${DEVICE}/commands/thermo%2F1/1/read`, 'service "thermo/1" is not a name'],
      [`/devices/${DEVICE}/commands/thermo/1%2F0/read`, 'version "1/0" is not a name'],
      [`/devices/${DEVICE}/commands/thermo/1/%23`, 'command "#" is not a name'],
      [`/devices/%23/commands/thermo/1/read`, 'device "#" is not a name'],
      [`/devices/+/commands/thermo/1/read`, 'device "+" is not a name'],
      [`/devices/${DEVICE}/commands/%2B/1/read`, 'service "+" is not a name'],
      [`/devices/${DEVICE}%00/commands/thermo/1/read`, 'device "thermo-1\\u0000" is not a name'],
      [`/devices/${DEVICE}%0A/commands/thermo/1/read`, 'is not a name'],
      [`/devices/${'d'.repeat(5_000)}/commands/thermo/1/read`, 'is not a name (1 to 128 characters'],
    ]
    for (const [route, text] of names) await bad(route.slice(0, 80), post(route, '{}'), 400, text)
    await bad('an unknown device', post('/devices/nobody/commands/thermo/1/read', '{}'), 404, 'no device nobody is known', 'DEVICE_UNKNOWN')
    await bad('an unknown command', post(`/devices/${DEVICE}/commands/thermo/1/reboot`, '{}'), 404, 'has no command reboot', 'NO_HANDLER')
    await bad('another version', post(`/devices/${DEVICE}/commands/thermo/2/read`, '{}'), 404, 'does not announce service thermo@2', 'NO_HANDLER')
    // Paths as written, not normalized by a client: never a route they do not name.
    for (const line of [`POST /devices/${DEVICE}/commands/thermo/1/../../../../metrics HTTP/1.1`, `POST /commands/thermo/1/read/../../../../metrics HTTP/1.1`, `POST /devices/${DEVICE}/commands/thermo/1/read/ HTTP/1.1`]) {
      const r = await rawHttp(line)
      expect(r.status, line).not.toBe(200)
      expect(r.body, line).not.toContain('outpost_gateway')
    }
    // Without the token: nothing runs.
    const anonymous = await fetch(gw.httpUrl + READ, { method: 'POST', body: '{}' })
    expect(anonymous.status).toBe(401)

    await goodHttp('F')
    const any = await post('/commands/thermo/1/read', '{"unit":"C"}')
    expect([any.status, any.body?.result?.unit]).toEqual([200, 'C'])
    expect(gw.alive()).toBe(true)
    expect(device.child.exitCode).toBe(null)
    // The gateway's own connection to its broker was never lost.
    expect(gw.lines.filter((l) => l.includes('oversized packet') || l.includes('mqtt connection error'))).toEqual([])
    expectNoStackTrace(gw.lines)
  }, 120_000)

  describe('NATS request/reply', () => {
    let nc: NatsConnection
    beforeAll(async () => {
      nc = await natsConnect({ servers: NATS_URL })
    })
    afterAll(async () => {
      await nc?.close()
    })

    /** A request as a cloud service sends it: the reply's body and its Outpost-Error header. */
    const request = async (subject: string, body: string | Uint8Array, headers: [string, string][] = []): Promise<{ body: ErrorBody; code: string | undefined }> => {
      const h = natsHeaders()
      for (const [k, v] of headers) h.append(k, v)
      const m = await nc.request(subject, body, { timeout: 30_000, headers: h })
      return { body: m.json<ErrorBody>(), code: m.headers?.get('Outpost-Error') || undefined }
    }
    const bad = async (what: string, r: Promise<{ body: ErrorBody; code: string | undefined }>, code: string, text: string | RegExp): Promise<void> => {
      const got = await r
      expect([got.code, got.body.error?.code], `${what}: ${JSON.stringify(got.body)}`).toEqual([code, code])
      if (typeof text === 'string') expect(got.body.error?.message, what).toContain(text)
      else expect(got.body.error?.message, what).toMatch(text)
    }
    const at = (rest: string): string => `${SUBJECT}.${rest}`

    it('hostile subjects, headers and bodies are typed errors; a request without a reply subject is dropped and logged; good calls still work', async () => {
      const maxPayload = nc.info!.max_payload
      await bad('not JSON', request(at(`${DEVICE}.thermo.1.read`), '{unit'), 'BAD_ARGUMENT', 'not JSON')
      await bad('not UTF-8', request(at(`${DEVICE}.thermo.1.read`), new Uint8Array([0x22, 0xc3, 0x28, 0x22])), 'BAD_ARGUMENT', 'not UTF-8')
      await bad('near max_payload', request(at(`${DEVICE}.thermo.1.read`), JSON.stringify({ pad: 'x'.repeat(maxPayload - 4_096) })), 'BAD_ARGUMENT', 'the payload takes')
      await bad('floats that grow as CBOR', request(at(`${DEVICE}.thermo.1.read`), JSON.stringify({ f: Array.from({ length: 60_000 }, () => 0.1) })), 'BAD_ARGUMENT', 'the payload takes')
      await bad('deep', request(at(`${DEVICE}.thermo.1.read`), deepArrays(50_000)), 'BAD_ARGUMENT', 'more than 63 levels')
      // Subjects.
      await bad('too few tokens', request(at(`${DEVICE}.read`), '{}'), 'BAD_ARGUMENT', '<device>.<service>.<version>.<command>')
      await bad('a wildcard level in a name', request(at(`${DEVICE}.ther+mo.1.read`), '{}'), 'BAD_ARGUMENT', 'service "ther+mo" is not a name')
      await bad('# as device', request(at('#.thermo.1.read'), '{}'), 'BAD_ARGUMENT', 'device "#" is not a name')
      await bad('20 tokens', request(at(`${DEVICE}.thermo.${'1.'.repeat(16)}read`), '{}'), 'NO_HANDLER', 'does not announce service thermo@1.1.1')
      await bad('a non-ASCII device', request(at('thérmo-1.thermo.1.read'), '{}'), 'DEVICE_UNKNOWN', 'no device thérmo-1')
      await bad('a long device', request(at(`${'d'.repeat(500)}.thermo.1.read`), '{}'), 'BAD_ARGUMENT', 'is not a name')
      // Headers given twice, in any case, or with values that are not accepted.
      await bad('timeout twice', request(at(`${DEVICE}.thermo.1.read`), '{}', [['Outpost-Timeout-Ms', '1000'], ['outpost-timeout-ms', '2000']]), 'BAD_ARGUMENT', 'header Outpost-Timeout-Ms is given 2 times')
      await bad('traceparent twice', request(at(`${DEVICE}.thermo.1.read`), '{}', [['traceparent', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'], ['Traceparent', 'x']]), 'BAD_ARGUMENT', 'header traceparent is given 2 times')
      await bad('offline later', request(at(`${DEVICE}.thermo.1.read`), '{}', [['Outpost-Offline', 'later']]), 'BAD_ARGUMENT', 'expected fail or hold')
      await bad('a negative timeout', request(at(`${DEVICE}.thermo.1.read`), '{}', [['Outpost-Timeout-Ms', '-5']]), 'BAD_ARGUMENT', 'not a whole number of milliseconds')

      // No reply subject: nobody to answer, so nothing is sent; the gateway says so in its log.
      nc.publish(at(`${DEVICE}.thermo.1.read`), '{}')
      await nc.flush()
      await until(() => gw.lines.some((l) => l.includes('a command request without a reply subject was ignored')), 10_000)
      // A reply subject that is a wildcard, from a client that does not check it (raw protocol).
      const raw = net.connect(4222, '127.0.0.1')
      raw.on('error', () => {})
      await new Promise<void>((r) => raw.once('connect', () => r()))
      raw.write(`CONNECT {"verbose":false,"pedantic":false}\r\nPUB ${at(`${DEVICE}.thermo.1.read`)} reply.* 2\r\n{}\r\nPUB ${at(`${DEVICE}.thermo.1.read`)} > 2\r\n{}\r\nPING\r\n`)
      await new Promise((r) => setTimeout(r, 500))
      raw.destroy()

      const good = await request(at(`${DEVICE}.thermo.1.read`), '{"unit":"F"}')
      expect([good.code, good.body.result?.unit]).toEqual([undefined, 'F'])
      const any = await request(at('_.thermo.1.read'), '')
      expect(any.body.result?.unit).toBe('C')
      expect(gw.alive()).toBe(true)
      await goodHttp()
      expectNoStackTrace(gw.lines)
    }, 120_000)
  })

  describe('RabbitMQ RPC', () => {
    let conn: ChannelModel
    let ch: Channel
    const replies = new Map<string, { body: ErrorBody; code: string | undefined }>()
    const uncorrelated: ErrorBody[] = []
    beforeAll(async () => {
      conn = await amqp.connect(AMQP_URL)
      ch = await conn.createChannel()
      await ch.consume(
        'amq.rabbitmq.reply-to',
        (m: ConsumeMessage | null) => {
          if (m === null) return
          const body = JSON.parse(m.content.toString('utf8')) as ErrorBody
          const id = m.properties.correlationId as string | undefined
          if (id === undefined) uncorrelated.push(body)
          else replies.set(id, { body, code: m.properties.headers?.['Outpost-Error'] as string | undefined })
        },
        { noAck: true },
      )
    })
    afterAll(async () => {
      await conn?.close().catch(() => {})
    })

    /** Publishes a request (bytes as given, or JSON of an object) with direct reply-to and a fresh correlation id; waits for its reply. */
    const call = async (body: unknown, props: Options.Publish = {}): Promise<{ body: ErrorBody; code: string | undefined }> => {
      const correlationId = randomBytes(6).toString('hex')
      const content = typeof body === 'string' || body instanceof Uint8Array ? Buffer.from(body) : Buffer.from(JSON.stringify(body))
      ch.sendToQueue(QUEUE, content, { replyTo: 'amq.rabbitmq.reply-to', correlationId, ...props })
      await until(() => replies.has(correlationId), 30_000)
      return replies.get(correlationId)!
    }
    const bad = async (what: string, r: Promise<{ body: ErrorBody; code: string | undefined }>, text: string, code = 'BAD_ARGUMENT'): Promise<void> => {
      const got = await r
      expect([got.code, got.body.error?.code], `${what}: ${JSON.stringify(got.body)}`).toEqual([code, code])
      expect(got.body.error?.message, what).toContain(text)
    }
    const read = { device: DEVICE, service: 'thermo', version: '1', command: 'read' }

    it('hostile messages are typed errors; without replyTo they are dropped, acknowledged and logged; a good call works after them', async () => {
      await bad('not JSON', call('{device: thermo-1}'), 'not JSON')
      await bad('not UTF-8', call(new Uint8Array([0x7b, 0xc0, 0xaf, 0x7d])), 'not UTF-8')
      await bad('not an object', call('"read"'), 'not a JSON object')
      await bad('null', call('null'), 'not a JSON object')
      await bad('unknown keys', call({ ...read, paylaod: {} }), 'unknown keys: "paylaod"')
      await bad('__proto__ as a key', call(`{"device":"${DEVICE}","service":"thermo","version":"1","command":"read","__proto__":{"payload":{"unit":"F"}}}`), 'unknown keys: "__proto__"')
      await bad('service not a string', call({ ...read, service: ['thermo'] }), "the request's service is not a string")
      await bad('no command', call({ device: DEVICE, service: 'thermo', version: '1' }), "the request's command is missing")
      await bad('timeoutMs as text', call({ ...read, timeoutMs: '100' }), 'timeoutMs')
      await bad('a wildcard device', call({ ...read, device: '#' }), 'device "#" is not a name')
      await bad('a path as service', call({ ...read, service: '../thermo' }), 'not a name')
      await bad('a huge payload', call({ ...read, payload: { pad: 'x'.repeat(1024 * 1024 - 200) } }), 'the payload takes')
      await bad('over the body limit', call({ ...read, payload: { pad: 'x'.repeat(1024 * 1024) } }), 'larger than 1048576 bytes')
      await bad('deep', call(`{"device":"${DEVICE}","service":"thermo","version":"1","command":"read","payload":${deepArrays(10_000)}}`), 'more than 63 levels')
      // A content type that is not JSON does not matter: the body is read as JSON.
      const xml = await call({ ...read, payload: { unit: 'F' } }, { contentType: 'application/xml', contentEncoding: 'gzip' })
      expect(xml.body.result?.unit).toBe('F')

      // No correlation id: answered all the same (the caller cannot match it, but nothing breaks).
      ch.sendToQueue(QUEUE, Buffer.from(JSON.stringify({ ...read, payload: { unit: 'F' } })), { replyTo: 'amq.rabbitmq.reply-to' })
      await until(() => uncorrelated.length === 1, 30_000)
      expect(uncorrelated[0]!.result?.unit).toBe('F')
      // No replyTo: dropped, acknowledged (it does not come back), and logged.
      ch.sendToQueue(QUEUE, Buffer.from(JSON.stringify(read)), { correlationId: 'nobody-listens' })
      await until(() => gw.lines.some((l) => l.includes('a command request without replyTo was dropped')), 30_000)
      // replyTo a queue that does not exist: the broker drops the reply, the front end goes on.
      ch.sendToQueue(QUEUE, Buffer.from(JSON.stringify(read)), { replyTo: `no.such.queue.${tag}`, correlationId: 'lost-1' })
      // A direct reply-to name that is not one: RabbitMQ closes the front end's connection (541
      // INTERNAL_ERROR) when the reply goes there, so the request, never acknowledged, came back on
      // every new connection and closed it too, for ever. Now it is dropped after 5 deliveries.
      ch.sendToQueue(QUEUE, Buffer.from(JSON.stringify(read)), { replyTo: 'amq.rabbitmq.reply-to.g1h2AA5yZXBseUAyNzc4NjI1MgAAC2AAAAAAYQ==.garbage', correlationId: 'lost-2' })
      await until(() => gw.lines.some((l) => l.includes('a command request delivered 5 times')), 60_000)

      const good = await call({ ...read, payload: { unit: 'F' } })
      expect([good.code, good.body.result?.unit]).toEqual([undefined, 'F'])
      const any = await call({ service: 'thermo', version: '1', command: 'read' })
      expect(any.body.result?.unit).toBe('C')
      // Everything was acknowledged: nothing waits in the queue, nothing is redelivered.
      const q = await ch.checkQueue(QUEUE)
      expect(q.messageCount).toBe(0)
      expect(q.consumerCount).toBe(1)
      expect(replies.has('nobody-listens')).toBe(false)
      expect(gw.alive()).toBe(true)
      await goodHttp()
      expectNoStackTrace(gw.lines)
    }, 120_000)
  })
})
