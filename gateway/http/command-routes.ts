// Device commands over the gateway's HTTP API:
//   POST /devices/:device/commands/:service/:version/:command   (that device)
//   POST /commands/:service/:version/:command                    (any live device that runs it)
// The body is the command's payload as JSON; `?timeoutMs=` and `?offline=fail|hold` are optional,
// a `traceparent` header is passed on. 200 `{ "result": … }`, or the error's status with
// `{ "error": { code, message, details? } }` (the shape replies carry on the wire).
import type { Context, Hono } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import { ErrorCode, OutpostError, toWireError } from '../../runtime/errors.js'
import { statusOf, type CommandRequest, type CommandRouter } from '../commands/command-router.js'
import { jsonReplacer } from '../forward/router.js'

/** Largest request body taken, bytes (a device's MQTT packet limit is 1 MiB by default). */
const MAX_BODY_BYTES = 1024 * 1024

const reply = (c: Context, status: number, doc: unknown): Response =>
  c.body(JSON.stringify(doc, jsonReplacer), status as 200, { 'Content-Type': 'application/json; charset=utf-8' })

const fail = (c: Context, err: unknown): Response => {
  const wire = toWireError(err)
  return reply(c, statusOf(wire.code), { error: wire })
}

/** The request's payload, deadline and policy; BAD_ARGUMENT for what cannot be read. */
async function readRequest(c: Context, target: Omit<CommandRequest, 'payload'>): Promise<CommandRequest> {
  const text = await c.req.text()
  let payload: unknown
  if (text.trim() === '') payload = {}
  else {
    try {
      payload = JSON.parse(text) as unknown
    } catch (err) {
      throw new OutpostError(ErrorCode.BAD_ARGUMENT, `the request body is not JSON: ${(err as Error).message}`)
    }
  }
  const t = c.req.query('timeoutMs')
  const timeoutMs = t === undefined ? undefined : /^\d{1,9}$/.test(t) ? Number(t) : NaN
  if (Number.isNaN(timeoutMs)) throw new OutpostError(ErrorCode.BAD_ARGUMENT, `timeoutMs "${String(t).slice(0, 32)}" is not a whole number of milliseconds`)
  const offline = c.req.query('offline')
  if (offline !== undefined && offline !== 'fail' && offline !== 'hold') throw new OutpostError(ErrorCode.BAD_ARGUMENT, `offline "${offline.slice(0, 32)}" is not accepted; expected fail or hold`)
  const traceparent = c.req.header('traceparent')
  return {
    ...target,
    payload,
    ...(timeoutMs === undefined ? {} : { timeoutMs }),
    ...(offline === undefined ? {} : { offline }),
    ...(traceparent === undefined || !/^[\da-f]{2}-[\da-f]{32}-[\da-f]{16}-[\da-f]{2}$/.test(traceparent) ? {} : { traceparent }),
  }
}

/** Adds the command routes to the app. */
export function commandRoutes(app: Hono, commands: { router: CommandRouter; allow: readonly string[] }): void {
  const limit = bodyLimit({
    maxSize: MAX_BODY_BYTES,
    onError: (c) => reply(c, 413, { error: { code: ErrorCode.BAD_ARGUMENT, message: `the request body is larger than ${MAX_BODY_BYTES} bytes` } }),
  })
  const run = async (c: Context, target: Omit<CommandRequest, 'payload'>): Promise<Response> => {
    try {
      const req = await readRequest(c, target)
      return reply(c, 200, { result: await commands.router.call(req, commands.allow) })
    } catch (err) {
      return fail(c, err)
    }
  }
  app.post('/devices/:device/commands/:service/:version/:command', limit, (c) =>
    run(c, { device: c.req.param('device'), service: c.req.param('service'), version: c.req.param('version'), command: c.req.param('command') }),
  )
  app.post('/commands/:service/:version/:command', limit, (c) => run(c, { service: c.req.param('service'), version: c.req.param('version'), command: c.req.param('command') }))
}
