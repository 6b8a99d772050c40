// Requests the HTTP face cannot take, written on a raw socket to a real gateway: each is answered
// in the API's error shape. Found by a tester: what Node's parser refuses (a Host with a control
// character, headers past the limit, a bad method) and a Host that is no host got a bare status
// with an empty body; a 100k-character path got a reset; a gzip body was parsed as JSON as it
// came; a latin1 one was decoded as UTF-8; a name holding U+202E was echoed raw in NO_HANDLER.
import net from 'node:net'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { defaultGatewayConfig } from '../../gateway/config/gateway-config.js'
import { quoted, shown } from '../../gateway/commands/shown.js'
import { startGateway, type Gateway } from '../../gateway/index.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'

const quiet = pino({ level: 'silent' })
const TOKEN = 'a-long-random-token-for-the-test'
const AUTH = `Authorization: Bearer ${TOKEN}\r\n`

interface Answer {
  status: number
  headers: Record<string, string>
  body: string
  /** The socket error seen before the end (a reset), if any. */
  error?: string
}

/**
 * Writes `request` as it is on a new connection (`chunk` bytes at a time, 5 ms apart, when given:
 * as a client on a real link does) and reads the answer to the connection's end.
 */
function raw(gw: Gateway, request: string, chunk?: number): Promise<Answer> {
  return new Promise((resolve) => {
    const s = net.connect(gw.http!.port, '127.0.0.1', async () => {
      if (chunk === undefined) return void s.write(request)
      for (let i = 0; i < request.length && !s.destroyed; i += chunk) {
        s.write(request.slice(i, i + chunk))
        await new Promise((r) => setTimeout(r, 5))
      }
    })
    const chunks: Buffer[] = []
    let error: string | undefined
    s.on('data', (d: Buffer) => chunks.push(d))
    s.on('error', (err: NodeJS.ErrnoException) => (error = err.code ?? err.message))
    s.on('close', () => {
      const text = Buffer.concat(chunks).toString('utf8')
      const [head = '', ...rest] = text.split('\r\n\r\n')
      const lines = head.split('\r\n')
      const headers: Record<string, string> = {}
      for (const l of lines.slice(1)) headers[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim()
      resolve({ status: Number(/^HTTP\/1\.1 (\d+)/.exec(lines[0]!)?.[1] ?? NaN), headers, body: rest.join('\r\n\r\n'), ...(error === undefined ? {} : { error }) })
    })
  })
}

/** Expects a JSON error answer of this status and code, on a connection closed after it; its message. */
function expectError(a: Answer, status: number, code: string, what: string): string {
  expect(a.status, `${what}: ${JSON.stringify(a)}`).toBe(status)
  expect(a.headers['content-type'], what).toMatch(/^application\/json/)
  expect(a.headers.connection?.toLowerCase(), what).toBe('close')
  const doc = JSON.parse(a.body) as { error: { code: string; message: string } }
  expect(Object.keys(doc), what).toEqual(['error'])
  expect(Object.keys(doc.error).sort(), what).toEqual(['code', 'message'])
  expect(doc.error.code, what).toBe(code)
  return doc.error.message
}

describe('gateway HTTP face: requests it cannot take', () => {
  const cleanup = cleanupAfterEach()
  const gateway = async (): Promise<Gateway> => {
    const config = defaultGatewayConfig()
    config.http = { enabled: true, host: '127.0.0.1', port: 0, token: TOKEN }
    config.auth.enabled = false
    const gw = await startGateway({ config, port: 0, logger: quiet })
    cleanup(() => gw.close())
    return gw
  }

  it("what Node's parser refuses, and a Host that is missing, doubled or no host, is a JSON error with Connection: close", async () => {
    const gw = await gateway()
    const get = (headers: string, line = 'GET /devices HTTP/1.1'): Promise<Answer> => raw(gw, `${line}\r\n${headers}${AUTH}\r\n`)
    const cases: [string, Promise<Answer>, number, RegExp][] = [
      ['a Host with a space', get('Host: a b\r\n'), 400, /Host header "a b" is not a host/],
      ['two Host headers', get('Host: a\r\nHost: b\r\n'), 400, /Host header is given 2 times/],
      ['a Host with a control character', get('Host: a\x01b\r\n'), 400, /not valid HTTP\/1\.1/],
      ['no Host', get(''), 400, /a Host header is required/],
      ['a header name with a space', get('Host: x\r\nBad Header: 1\r\n'), 400, /not valid HTTP\/1\.1/],
      ['a bad method', get('Host: x\r\n', 'FOO /devices HTTP/1.1'), 400, /method/],
      ['a bad version', get('Host: x\r\n', 'GET /devices HTTP/9.x'), 400, /not valid HTTP\/1\.1/],
      ['a header over the limit', get(`Host: x\r\nX-Big: ${'y'.repeat(100_000)}\r\n`), 431, /larger than \d+ bytes/],
    ]
    for (const [what, answer, status, message] of cases) expect(expectError(await answer, status, 'BAD_ARGUMENT', what), what).toMatch(message)
    // The gateway still answers.
    expect((await get('Host: x\r\nConnection: close\r\n')).status).toBe(200)
  }, 60_000)

  it('a 100k-character path is a 431 JSON error, not a reset', async () => {
    const gw = await gateway()
    // At once, and as a slower client sends it: the rest still coming after the answer, a socket
    // closed at once then reset the connection and the client lost the answer.
    for (const chunk of [undefined, undefined, 8_192, 8_192, 1_024]) {
      const a = await raw(gw, `GET /devices/${'d'.repeat(100_000)} HTTP/1.1\r\nHost: x\r\n${AUTH}\r\n`, chunk)
      expect(a.error, 'no reset').toBeUndefined()
      expect(expectError(a, 431, 'BAD_ARGUMENT', 'a long path')).toMatch(/request line and headers are larger than/)
    }
    // Through Node's fetch, as the tester sent it.
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${gw.http!.url}/devices/${'d'.repeat(100_000)}`, { headers: { authorization: `Bearer ${TOKEN}` } })
      expect([res.status, ((await res.json()) as { error: { code: string } }).error.code]).toEqual([431, 'BAD_ARGUMENT'])
    }
  }, 60_000)

  it('a command body with a Content-Encoding or a charset other than UTF-8 is 415; UTF-8 however spelt is read', async () => {
    const gw = await gateway()
    const body = '{"unit":"C"}'
    const post = (headers: string): Promise<Answer> =>
      raw(gw, `POST /commands/thermo/1/read HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${AUTH}${headers}Content-Length: ${body.length}\r\n\r\n${body}`)
    for (const [headers, text] of [
      ['Content-Encoding: gzip\r\n', 'Content-Encoding "gzip" is not taken'],
      ['Content-Encoding: identity, br\r\n', 'Content-Encoding "br" is not taken'],
      ['Content-Type: application/json; charset=latin1\r\n', 'charset "latin1" is not taken'],
      ['Content-Type: application/json; charset="ISO-8859-1"\r\n', 'charset "iso-8859-1" is not taken'],
      ['Content-Type: text/plain;charset=utf-16\r\n', 'charset "utf-16" is not taken'],
    ]) {
      const a = await post(headers!)
      expect(a.status, headers).toBe(415)
      expect(a.headers['accept-encoding']).toBe('identity')
      expect(JSON.parse(a.body), headers).toEqual({ error: { code: 'BAD_ARGUMENT', message: expect.stringContaining(text!) as string } })
    }
    // Read, and answered by the router: no device runs the command.
    for (const headers of ['', 'Content-Type: application/json\r\n', 'Content-Type: application/json; charset=utf-8\r\n', 'Content-Type: application/json; charset=UTF-8\r\n', 'Content-Type: application/json; charset="utf-8"\r\n', 'Content-Encoding: identity\r\n']) {
      const a = await post(headers)
      expect([a.status, (JSON.parse(a.body) as { error: { code: string } }).error.code], headers).toEqual([404, 'NO_HANDLER'])
    }
  }, 60_000)

  it('names echoed in error messages are escaped: a bidi override or an invisible character shows as \\u escapes', async () => {
    const gw = await gateway()
    // The code and message (details carry the names as data, in JSON).
    const post = async (path: string): Promise<{ code: string; message: string }> => {
      const res = await fetch(`${gw.http!.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` }, body: '{}' })
      const { code, message } = ((await res.json()) as { error: { code: string; message: string } }).error
      return { code, message }
    }
    const rlo = encodeURIComponent('evil\u202Etxt.exe')
    const anyDevice = await post(`/commands/${rlo}/1/read`)
    expect(anyDevice).toEqual({ code: 'NO_HANDLER', message: 'no device announces service "evil\\u202etxt.exe"@1' })
    const named = await post(`/devices/${encodeURIComponent('dev\u200Bice')}/commands/thermo/1/read`)
    expect(named).toEqual({ code: 'DEVICE_UNKNOWN', message: 'no device "dev\\u200bice" is known to this gateway' })
    for (const m of [anyDevice.message, named.message]) expect(m).not.toMatch(/[\u200B-\u200F\u202A-\u202E\u2066-\u2069]/)
    const route = await fetch(`${gw.http!.url}/x${rlo}`, { headers: { authorization: `Bearer ${TOKEN}` } })
    expect(await route.json()).toEqual({ error: { code: 'NOT_FOUND', message: 'no route GET "/xevil\\u202etxt.exe"' } })
    // Plain names read as they are.
    expect(await post('/commands/thermo/1/read')).toEqual({ code: 'NO_HANDLER', message: 'no device announces service thermo@1' })
  }, 60_000)

  it('requests before a malformed one on the same connection are answered first, in order; then the refusal', async () => {
    const gw = await gateway()
    const good = `GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n`
    const devices = `GET /devices HTTP/1.1\r\nHost: x\r\n${AUTH}\r\n`
    const bad = `GET /healthz HTTP/1.1\r\nHost: x\r\nX: \x01\r\n\r\n`
    for (const pipeline of [good + bad, good + devices + bad]) {
      const text = await new Promise<string>((resolve) => {
        const s = net.connect(gw.http!.port, '127.0.0.1', () => s.write(pipeline))
        let out = ''
        s.on('data', (d: Buffer) => (out += d.toString('utf8')))
        s.on('error', () => {})
        s.on('close', () => resolve(out))
      })
      const statuses = [...text.matchAll(/HTTP\/1\.1 (\d+)/g)].map((m) => Number(m[1]))
      // Before: the refusal alone, which the client took for the answer to its first request.
      expect(statuses, JSON.stringify(text)).toEqual([...Array<number>(pipeline === good + bad ? 1 : 2).fill(200), 400])
    }
  }, 60_000)

  it('CONNECT, an Expect it does not meet, a transfer coding other than chunked, and a Host hidden past 2,000 headers are JSON errors', async () => {
    const gw = await gateway()
    expectError(await raw(gw, 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n'), 405, 'BAD_ARGUMENT', 'CONNECT')
    expectError(await raw(gw, `GET /devices HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n${AUTH}\r\n`), 417, 'BAD_ARGUMENT', 'Expect')
    const body = '2\r\n{}\r\n0\r\n\r\n'
    for (const coding of ['gzip, chunked', 'foo, chunked']) {
      const a = await raw(gw, `POST /commands/thermo/1/read HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${AUTH}Transfer-Encoding: ${coding}\r\n\r\n${body}`)
      expect(a.status, coding).toBe(415)
      expect(JSON.parse(a.body), coding).toEqual({ error: { code: 'BAD_ARGUMENT', message: expect.stringContaining('Transfer-Encoding') as string } })
    }
    const filler = Array.from({ length: 2_000 }, (_, i) => `X-${i}: 1\r\n`).join('')
    expect(expectError(await raw(gw, `GET /devices HTTP/1.1\r\nHost: a\r\n${filler}Host: evil\r\n${AUTH}\r\n`), 400, 'BAD_ARGUMENT', 'a Host after 2,000 headers')).toMatch(/given 2 times/)
    expect(expectError(await raw(gw, `GET /devices HTTP/1.1\r\nHost: 127.0.0.1:\r\n${AUTH}\r\n`), 400, 'BAD_ARGUMENT', 'an empty port')).toMatch(/not a host/)
    // HTTP/1.0 has no Host: a probe is answered.
    const probe = await raw(gw, 'GET /healthz HTTP/1.0\r\n\r\n')
    expect(probe.status).toBe(200)
  }, 60_000)

  it('shown and quoted escape what does not show for itself, and only that', () => {
    expect(shown('thermo-1')).toBe('thermo-1')
    expect(shown('a b')).toBe('a b')
    expect(shown('é😀')).toBe('é😀')
    expect(shown('a\u202Eb')).toBe('"a\\u202eb"')
    expect(shown('a"b')).toBe('"a\\"b"')
    expect(shown('tag\u{E0041}')).toBe('"tag\\udb40\\udc41"')
    expect(shown('nb\u00A0sp\u2028')).toBe('"nb\\u00a0sp\\u2028"')
    expect(shown('x'.repeat(300), 4)).toBe('xxxx')
    expect(quoted('ok')).toBe('"ok"')
    expect(quoted('a\u0000\u0085\uFEFF\uD800')).toBe('"a\\u0000\\u0085\\ufeff\\ud800"')
  })
})
