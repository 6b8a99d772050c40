// Requests the routes never see, answered in the API's error shape, `{"error":{"code","message"}}`
// with `Connection: close`: what Node's HTTP parser refuses (a header with a control character,
// headers past its limit, a method it does not know, a client too slow), and a Host header that is
// missing, given twice or not a host. Node and @hono/node-server answered those with a bare status
// and an empty body; a request line past the header limit (a 100k-character path) got a reset.
import { createServer, maxHeaderSize, STATUS_CODES, type IncomingMessage, type Server, type ServerOptions, type ServerResponse } from 'node:http'
import net from 'node:net'
import { getRequestListener, RequestError } from '@hono/node-server'
import type { Logger } from 'pino'
import { ErrorCode } from '../../runtime/errors.js'
import { quoted, shown } from '../commands/shown.js'

/**
 * How long a connection refused by the parser is read (and what comes thrown away) after its
 * answer, ms. Closed with the rest of a large request unread, the socket sends a reset, and the
 * client's system may drop the answer it had received before reading it: a 100k-character path
 * saw ECONNRESET and never the 431.
 */
const LINGER_MS = 1_000

/** The error body, as every route writes it. */
const errorBody = (code: string, message: string): string => JSON.stringify({ error: { code, message } })

/** A refusal as a Response (hono's listener sends it; the connection is closed after it). */
const refusal = (status: number, code: string, message: string): Response =>
  new Response(errorBody(code, message), { status, headers: { 'Content-Type': 'application/json', Connection: 'close' } })

/** RFC 3986's host (a name, an IPv4 address or a bracketed IP literal) with an optional port. */
const HOST = /^(?:\[[0-9A-Za-z:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(?::(\d{1,5}))?$/

/** Why the request's Host header is refused (RFC 9112 §3.2: none, more than one, or not a host), or undefined. */
function hostProblem(req: IncomingMessage): string | undefined {
  let n = 0
  for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i]!.toLowerCase() === 'host') n++
  if (n === 0) {
    // HTTP/1.0 has no Host (a health probe, say): the request is taken as sent to this server.
    if (req.httpVersion !== '1.0') return 'a Host header is required'
    const local = req.socket.localAddress ?? '127.0.0.1'
    req.headers.host = `${net.isIPv6(local) ? `[${local}]` : local}:${req.socket.localPort ?? 80}`
    return undefined
  }
  if (n > 1) return `the Host header is given ${n} times; expected once`
  const host = req.headers.host ?? ''
  const m = HOST.exec(host)
  return m !== null && (m[1] === undefined || Number(m[1]) <= 65_535) ? undefined : `the Host header ${quoted(host, 200)} is not a host name or address with an optional port`
}

/** Status, code and message of what the parser (or the socket) raised. */
function parserRefusal(err: NodeJS.ErrnoException & { reason?: string }, server: Server): [number, string, string] {
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      return [431, ErrorCode.BAD_ARGUMENT, `the request line and headers are larger than ${maxHeaderSize} bytes`]
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return [413, ErrorCode.BAD_ARGUMENT, 'the chunk extensions of the request body are too large']
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return [408, ErrorCode.TIMEOUT, `the request did not arrive in time (its headers within ${server.headersTimeout} ms, all of it within ${server.requestTimeout} ms)`]
    case 'HPE_INVALID_METHOD':
      return [400, ErrorCode.BAD_ARGUMENT, 'the request method is not an HTTP method']
    default:
      // llhttp's reason is its own fixed text ("Invalid header value char"), never the client's bytes.
      return [400, ErrorCode.BAD_ARGUMENT, `the request is not valid HTTP/1.1: ${shown(err.reason ?? err.code ?? 'unreadable', 120)}`]
  }
}

/**
 * Answers what the parser refuses on the socket itself (there is no response object then), once
 * per connection: the parser raises again on each further chunk. A connection with an answer
 * already on its way (pipelined requests) is closed, as Node does, so that answer is not corrupted.
 */
function answerParserErrors(server: Server): void {
  const answered = new WeakSet<net.Socket>()
  server.on('clientError', (err: NodeJS.ErrnoException, socket: net.Socket) => {
    if (answered.has(socket)) return
    answered.add(socket)
    if (err.code === 'ECONNRESET' || !socket.writable) return void socket.destroy()
    const [status, code, message] = parserRefusal(err, server)
    // Requests read before the bad one (pipelined) are answered first, in order: the socket's
    // current answer, and each one Node hands it next, until none is left. Written at once, the
    // refusal took the place of the first answer, which was then thrown away.
    const answer = (): void => {
      const current = (socket as net.Socket & { _httpMessage?: ServerResponse | null })._httpMessage
      if (current != null && !current.writableFinished && !current.destroyed) {
        const next = (): void => void setImmediate(answer)
        current.once('finish', next)
        current.once('close', next)
        return
      }
      if (!socket.destroyed && socket.writable) refuseOn(socket, status, code, message)
    }
    answer()
  })
}

/**
 * A refusal written on a socket no response object owns (what the parser refused, a CONNECT),
 * then the socket is closed: once the client ends its side, or after LINGER_MS.
 */
function refuseOn(socket: net.Socket, status: number, code: string, message: string, extra = ''): void {
  const body = errorBody(code, message)
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}Connection: close\r\n\r\n${body}`)
  const cut = setTimeout(() => socket.destroy(), LINGER_MS).unref()
  socket.once('close', () => clearTimeout(cut))
  socket.once('end', () => socket.destroy())
}

/**
 * The HTTP server of the API: `fetch` (the hono app) on Node, the process's Request and Response
 * left alone, every request it cannot take answered as the routes answer (see the top of this file).
 */
export function createApiServer(fetch: (req: Request, env: unknown) => Response | Promise<Response>, serverOptions: ServerOptions, log: Logger): Server {
  const listener = getRequestListener(fetch, {
    overrideGlobalObjects: false,
    // What @hono/node-server cannot make a Request of (a Host that is no URL's, a backslash in the path).
    errorHandler: (err) => {
      if (err instanceof RequestError) return refusal(400, ErrorCode.BAD_ARGUMENT, `the request cannot be read: ${shown(err.message.toLowerCase(), 120)}`)
      log.warn({ err: err instanceof Error ? err.message : String(err) }, 'HTTP request failed')
      return refusal(500, ErrorCode.INTERNAL, 'internal error')
    },
  })
  // Node's own check of Host (requireHostHeader) answers with an empty body: checked here instead.
  const server = createServer({ ...serverOptions, requireHostHeader: false }, (req, res) => {
    const problem = hostProblem(req)
    if (problem === undefined) return void listener(req, res)
    const body = errorBody(ErrorCode.BAD_ARGUMENT, problem)
    res.writeHead(400, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), Connection: 'close' }).end(body)
  })
  answerParserErrors(server)
  // Without a listener Node closes a CONNECT's socket without a word; this API tunnels nothing.
  server.on('connect', (_req: IncomingMessage, socket: net.Socket) => refuseOn(socket, 405, ErrorCode.BAD_ARGUMENT, 'CONNECT is not taken: this API tunnels nothing', 'Allow: GET, POST\r\n'))
  // An Expect other than 100-continue: Node answered 417 with an empty body and kept the connection.
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    const body = errorBody(ErrorCode.BAD_ARGUMENT, `the expectation ${quoted(String(req.headers.expect ?? ''), 64)} is not taken; only 100-continue is`)
    res.writeHead(417, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), Connection: 'close' }).end(body)
  })
  // Node keeps only the first 2,000 header lines: a second Host after 2,000 others went unseen.
  // The header size limit bounds how many there can be.
  server.maxHeadersCount = 0
  return server
}
