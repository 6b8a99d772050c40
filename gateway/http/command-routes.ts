// Device commands over the gateway's HTTP API:
//   POST /devices/:device/commands/:service/:version/:command   (that device)
//   POST /commands/:service/:version/:command                    (any live device that runs it)
// The body is the command's payload as UTF-8 JSON, unencoded (another coding or charset: 415);
// `?timeoutMs=` and `?offline=fail|hold` are optional, a `traceparent` header is passed on. 200
// `{ "result": … }`, or the error's status with
// `{ "error": { code, message, details? } }` (the shape replies carry on the wire).
import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { Context, Hono } from 'hono'
import { ErrorCode, OutpostError, toWireError } from '../../runtime/errors.js'
import { MAX_COMMAND_BODY_BYTES, commandRequest, parseJsonBody, parseOffline, parseTimeout, type CommandTarget } from '../commands/command-request.js'
import { statusOf, type CommandRequest, type CommandRouter } from '../commands/command-router.js'
import { quoted } from '../commands/shown.js'
import { jsonReplacer } from '../forward/router.js'

const reply = (c: Context, status: number, doc: unknown, headers: Record<string, string> = {}): Response =>
  c.body(JSON.stringify(doc, jsonReplacer), status as 200, { 'Content-Type': 'application/json; charset=utf-8', ...headers })

const fail = (c: Context, err: unknown): Response => {
  const wire = toWireError(err)
  return reply(c, statusOf(wire.code), { error: wire })
}

/** The query parameters a command takes. */
const QUERY = ['timeoutMs', 'offline']

/**
 * The query's one value of each parameter. A parameter given twice (`?timeoutMs=1000&timeoutMs=abc`
 * took the first, unchecked, while NATS refuses a repeated header) or one it does not take
 * (`?timeout=500` was ignored: the call ran with the default deadline) is BAD_ARGUMENT.
 */
function queryOf(c: Context): Record<string, string | undefined> {
  const all = c.req.queries()
  const out: Record<string, string | undefined> = {}
  for (const [name, values] of Object.entries(all)) {
    if (!QUERY.includes(name)) throw new OutpostError(ErrorCode.BAD_ARGUMENT, `query parameter ${quoted(name, 40)} is not taken; expected ${QUERY.join(' or ')}`)
    if (values.length > 1) throw new OutpostError(ErrorCode.BAD_ARGUMENT, `query parameter ${name} is given ${values.length} times; expected once`)
    out[name] = values[0]
  }
  return out
}

/** Thrown by readBody for a body over MAX_COMMAND_BODY_BYTES: answered 413, the connection closed. */
class BodyTooLarge extends Error {}

/**
 * The most a too-large body is read (and thrown away) before the 413 is sent. A server that
 * answers and closes while its client still sends makes the client's system reset the connection,
 * and the client then saw "write EPIPE" instead of the answer (a 2 MB body, now and then). Read to
 * its end, the body leaves nothing unread and the answer arrives; a body larger still is answered
 * at once (the deadline for a whole request, 30 s, bounds a slow one).
 */
const DRAIN_BYTES = 8 * 1024 * 1024

/**
 * The request's body, at most MAX_COMMAND_BODY_BYTES: refused by its Content-Length, or once the
 * bytes read pass it (a chunked body, which has no length). Read here, not by hono's bodyLimit,
 * which makes a new Request of a body without Content-Length: with the process's Request left
 * alone (http-server.ts) that threw, and a chunked body or a POST without one was 500 INTERNAL.
 */
async function readBody(c: Context): Promise<Uint8Array> {
  const header = c.req.header('content-length')
  const length = header !== undefined && c.req.header('transfer-encoding') === undefined ? Number(header) : undefined
  if (length !== undefined && length > DRAIN_BYTES) throw new BodyTooLarge()
  const body = c.req.raw.body
  if (body === null) return new Uint8Array(0)
  const chunks: Uint8Array[] = []
  let size = 0
  const reader = body.getReader()
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    size += value.byteLength
    if (size > DRAIN_BYTES) {
      void reader.cancel().catch(() => undefined)
      throw new BodyTooLarge()
    }
    if (size <= MAX_COMMAND_BODY_BYTES) chunks.push(value)
    // Refused for sure now: what was kept is let go while the rest is read.
    else chunks.length = 0
  }
  if (size > MAX_COMMAND_BODY_BYTES) throw new BodyTooLarge()
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size)
}

/** Thrown by readRequest for a body in a coding or charset it does not read: answered 415. */
class UnsupportedBody extends Error {}

/** Charset labels of UTF-8 (WHATWG Encoding) a Content-Type may declare. */
const UTF8_LABELS = new Set(['utf-8', 'utf8'])

/**
 * Why the body cannot be read as it is declared, or undefined. A gzip body was parsed as JSON
 * as it came (a BAD_ARGUMENT that said nothing of the coding, or worse, bytes that happen to
 * parse), and a latin1 one decoded as UTF-8: the declared coding or charset is refused instead.
 * Any content type is taken (JSON is JSON whatever it says); only its charset is looked at.
 */
function unsupportedBody(c: Context): string | undefined {
  const codings = (c.req.header('content-encoding') ?? '').split(',').map((x) => x.trim().toLowerCase()).filter((x) => x !== '' && x !== 'identity')
  if (codings.length > 0) return `the request body's Content-Encoding ${quoted(codings.join(', '), 64)} is not taken; send it unencoded (identity)`
  // Node undoes chunked alone and passes any other transfer coding on as body bytes.
  const transfer = (c.req.header('transfer-encoding') ?? '').split(',').map((x) => x.trim().toLowerCase()).filter((x) => x !== '' && x !== 'chunked' && x !== 'identity')
  if (transfer.length > 0) return `the request body's Transfer-Encoding ${quoted(transfer.join(', '), 64)} is not taken; send it chunked or with a Content-Length`
  for (const param of (c.req.header('content-type') ?? '').split(';').slice(1)) {
    const eq = param.indexOf('=')
    if (eq < 0 || param.slice(0, eq).trim().toLowerCase() !== 'charset') continue
    const charset = param.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1').toLowerCase()
    if (!UTF8_LABELS.has(charset)) return `the request body's charset ${quoted(charset, 64)} is not taken; send UTF-8 JSON`
  }
  return undefined
}

/** The request's payload, deadline and policy; BAD_ARGUMENT for what cannot be read. */
async function readRequest(c: Context, target: CommandTarget): Promise<CommandRequest> {
  const query = queryOf(c)
  const refused = unsupportedBody(c)
  // Read (and thrown away) all the same: the answer then arrives whole (see DRAIN_BYTES).
  const body = await readBody(c)
  if (refused !== undefined) throw new UnsupportedBody(refused)
  const payload = parseJsonBody(body)
  const extras = { timeoutMs: parseTimeout(query.timeoutMs, 'timeoutMs'), offline: parseOffline(query.offline, 'offline'), traceparent: c.req.header('traceparent') }
  return commandRequest(target, payload, extras)
}

/** Adds the command routes to the app. */
export function commandRoutes(app: Hono, commands: { router: CommandRouter; allow: readonly string[] }, hold: (socket: Socket | undefined) => () => void = () => () => {}): void {
  const run = async (c: Context, target: CommandTarget): Promise<Response> => {
    // Its connection is not taken to make room for another while the call is in progress (http-server.ts, createRoom).
    const release = hold((c.env as { incoming?: IncomingMessage } | undefined)?.incoming?.socket)
    try {
      const req = await readRequest(c, target)
      // A client that closes its connection has gone: its call stops waiting and gives its place back.
      return reply(c, 200, { result: await commands.router.call({ ...req, signal: c.req.raw.signal }, commands.allow) })
    } catch (err) {
      // RFC 9110 §15.5.16: the codings that are taken.
      if (err instanceof UnsupportedBody) return reply(c, 415, { error: { code: ErrorCode.BAD_ARGUMENT, message: err.message } }, { 'Accept-Encoding': 'identity' })
      if (!(err instanceof BodyTooLarge)) return fail(c, err)
      // The connection is closed after this answer (the rest of a body over DRAIN_BYTES is not
      // read). Without saying so, a client kept it for its next request, which then failed as
      // "other side closed".
      c.header('Connection', 'close')
      return reply(c, 413, { error: { code: ErrorCode.BAD_ARGUMENT, message: `the request body is larger than ${MAX_COMMAND_BODY_BYTES} bytes` } })
    } finally {
      release()
    }
  }
  app.post('/devices/:device/commands/:service/:version/:command', (c) =>
    run(c, { device: c.req.param('device'), service: c.req.param('service'), version: c.req.param('version'), command: c.req.param('command') }),
  )
  app.post('/commands/:service/:version/:command', (c) => run(c, { service: c.req.param('service'), version: c.req.param('version'), command: c.req.param('command') }))
}
