// Device commands over NATS request/reply. A cloud caller sends a request to
//   <subject>.<device>.<service>.<version>.<command>      (device `_`: any live device)
// with the command's payload as JSON (an empty body is `{}`) and optional headers
// `Outpost-Timeout-Ms`, `Outpost-Offline` (fail|hold), `Outpost-Sent-At` (epoch ms: the deadline
// counts from then) and `traceparent`. The reply is the same
// JSON the HTTP API answers with: `{ "result": … }`, or `{ "error": { code, message, details? } }`
// with the header `Outpost-Error: <code>`.
//
// Subject tokens: NATS splits subjects at '.', and a version such as "1.0" spans two tokens. The
// first token after the prefix is the device, the second the service, the last the command, and
// everything in between (joined with '.') the version, so `outpost.cmd.t-1.thermo.1.0.read` is
// thermo@1.0 `read` on t-1. A device id or service name that contains '.' cannot be called over
// NATS (use HTTP or RabbitMQ), and a device literally named `_` can only be reached as "any".
//
// Every gateway on the same NATS subscribes in one queue group, so each request is answered once.
import { redactUrl } from '../../runtime/redact-url.js'
import { connect, headers as natsHeaders, Match, type Msg, type MsgHdrs, type NatsConnection } from '@nats-io/transport-node'
import type { Logger } from 'pino'
import { backoffDelay, createPause } from '../../runtime/backoff.js'
import { ErrorCode, OutpostError, errorMessage, toWireError, type WireError } from '../../runtime/errors.js'
import { createLogLimiter } from '../../runtime/log-limiter.js'
import type { NatsCommandsConfig } from './command-config.js'
import { commandRequest, createCommandStats, encodeReply, parseJsonBody, parseOffline, parseSentAt, parseTimeout, type CommandFrontEnd } from './command-request.js'
import type { CommandRequest, CommandRouter } from './command-router.js'
import { shown } from './shown.js'

/** Pings of the command connection, ms (two unanswered: the link is taken as lost). */
const PING_MS = 10_000
/** Longest wait for requests already taken to be answered when the front end closes, ms. */
const DRAIN_MS = 2_000

/** The request a message stands for. @throws BAD_ARGUMENT for a subject, body or header that cannot be read */
function readRequest(prefix: string, msg: Msg): CommandRequest {
  const tokens = msg.subject.slice(prefix.length + 1).split('.')
  if (tokens.length < 4) {
    throw new OutpostError(ErrorCode.BAD_ARGUMENT, `subject ${shown(msg.subject, 200)} is not ${prefix}.<device>.<service>.<version>.<command> (device _: any live device)`)
  }
  const device = tokens[0]!
  const h: MsgHdrs | undefined = msg.headers
  // Header names as HTTP takes them, whatever their case; one value each.
  const header = (name: string): string | undefined => {
    const all = h?.values(name, Match.IgnoreCase) ?? []
    if (all.length > 1) throw new OutpostError(ErrorCode.BAD_ARGUMENT, `header ${name} is given ${all.length} times; expected once`)
    return all[0]
  }
  const timeoutMs = parseTimeout(header('Outpost-Timeout-Ms'), 'header Outpost-Timeout-Ms')
  const offline = parseOffline(header('Outpost-Offline'), 'header Outpost-Offline')
  const target = { ...(device === '_' ? {} : { device }), service: tokens[1]!, version: tokens.slice(2, -1).join('.'), command: tokens.at(-1)! }
  // A request that waited in a stalled link ran after its caller gave up, and a retry ran it twice.
  const sentAt = parseSentAt(header('Outpost-Sent-At'), 'header Outpost-Sent-At')
  return commandRequest(target, parseJsonBody(msg.data), { timeoutMs, offline, traceparent: header('traceparent'), sentAt })
}

/**
 * Starts answering command requests from NATS. It resolves once the first connection attempt is
 * over. When the servers cannot be reached then, it logs a warning naming them and keeps trying
 * with backoff instead of failing: the gateway's first job is the local device network, which
 * must not go down (or flap under a service manager's restarts) because the cloud link is not up
 * yet when the gateway boots. Once connected, the NATS client reconnects by itself, forever.
 */
export async function startNatsCommands(opts: { config: NatsCommandsConfig; router: CommandRouter; log: Logger }): Promise<CommandFrontEnd> {
  const { config, router } = opts
  const log = opts.log.child({ frontEnd: 'nats-commands' })
  const troubles = createLogLimiter(log)
  const counts = createCommandStats()
  // As logged: a password in a server URL (nats://user:pass@host) shown as ***.
  const servers = redactUrl(config.servers.join(', '))
  let nc: NatsConnection | undefined
  let closing = false

  const send = (msg: Msg, outcome: { result: unknown } | { error: WireError }): void => {
    const { body, error } = encodeReply(outcome)
    const h = natsHeaders()
    h.set('Content-Type', 'application/json')
    if (error !== undefined) h.set('Outpost-Error', error)
    try {
      if (!msg.respond(body, { headers: h })) throw new Error('no reply subject')
      if (error === undefined) counts.ok()
      else counts.fail(error)
    } catch (err) {
      // Too large for the server's max_payload, or the connection is closed: say what went wrong, once.
      if (error === undefined && /max_payload|payload|too large|exceed/i.test(errorMessage(err))) {
        return send(msg, { error: { code: ErrorCode.INTERNAL, message: `the device's result (${body.byteLength} bytes) is larger than the NATS server takes` } })
      }
      counts.fail('REPLY_LOST')
      troubles.warn('reply lost', { err: errorMessage(err) }, 'a command reply could not be sent over NATS')
    }
  }

  const handle = async (msg: Msg): Promise<void> => {
    if (msg.reply === undefined || msg.reply === '') {
      counts.fail('NO_REPLY')
      troubles.warn('no reply subject', { subject: msg.subject.slice(0, 200) }, 'a command request without a reply subject was ignored (publish it as a request)')
      return
    }
    // The reply goes out on the gateway's connection: only to an inbox, never to a subject the
    // caller may not publish to itself (a JetStream API subject, a stream's events).
    if (!config.replyPrefixes.some((p) => msg.reply!.startsWith(`${p}.`))) {
      counts.fail('REPLY_REFUSED')
      troubles.warn('reply refused', { subject: msg.subject.slice(0, 200), reply: msg.reply.slice(0, 200) }, `a command request whose reply subject is not under ${config.replyPrefixes.join(', ')} was dropped, nothing sent (commands.nats.replyPrefixes)`)
      return
    }
    try {
      const req = readRequest(config.subject, msg)
      send(msg, { result: await router.call(req, config.allow) })
    } catch (err) {
      send(msg, { error: toWireError(err) })
    }
  }

  const onMessage = (err: Error | null, msg: Msg): void => {
    if (err !== null) return void troubles.warn('subscription error', { err: errorMessage(err) }, 'NATS command subscription error')
    // Not awaited: requests run side by side, each to its own reply.
    handle(msg).catch((e: unknown) => troubles.error('handler failed', { err: errorMessage(e) }, 'a NATS command request failed unexpectedly'))
  }

  /** Logs what the client reports (disconnects, reconnects, server errors) until it closes. */
  const watchStatus = async (conn: NatsConnection): Promise<void> => {
    for await (const s of conn.status()) {
      if (s.type === 'disconnect') log.warn({ server: s.server }, 'NATS command link lost; reconnecting')
      else if (s.type === 'reconnect') log.info({ server: s.server }, 'NATS command link back')
      else if (s.type === 'error') troubles.warn('server error', { err: errorMessage(s.error) }, 'NATS server reported an error')
    }
  }

  /** One connection attempt; true when connected and subscribed. */
  const attempt = async (): Promise<boolean> => {
    let conn: NatsConnection
    try {
      conn = await connect({
        servers: config.servers,
        name: 'outpost-gateway-commands',
        maxReconnectAttempts: -1,
        timeout: 10_000,
        // A link that stalls (nothing comes back, the socket stays open) is found within 30 s: with
        // nats.js's defaults (2 minutes, 2 pings out) it took 6, and every call meanwhile was lost.
        pingInterval: PING_MS,
        maxPingOut: 2,
        ...(config.user === undefined ? {} : { user: config.user }),
        ...(config.pass === undefined ? {} : { pass: config.pass }),
        ...(config.token === undefined ? {} : { token: config.token }),
      })
    } catch (err) {
      const why = errorMessage(err)
      const login = /authoriz|authenticat/i.test(why)
      troubles.warn(login ? 'login refused' : 'unreachable', { servers, err: why }, login ? 'NATS refused the command front end\'s login; check user, pass or token (trying again)' : `TARGET_UNAVAILABLE: cannot reach NATS at ${servers} for commands; trying again with backoff`)
      return false
    }
    if (closing) {
      await conn.close().catch(() => {})
      return false
    }
    try {
      conn.subscribe(`${config.subject}.>`, { queue: config.queueGroup, callback: onMessage })
      await conn.flush()
    } catch (err) {
      troubles.warn('subscribe failed', { err: errorMessage(err) }, 'cannot subscribe to NATS command subjects (trying again)')
      await conn.close().catch(() => {})
      return false
    }
    nc = conn
    void watchStatus(conn).catch(() => {})
    // The client gives up only on repeated login refusals or a server that closes on it: start over then.
    void conn.closed().then((err) => {
      if (closing || nc !== conn) return
      nc = undefined
      log.error({ servers, err: err === undefined ? undefined : errorMessage(err) }, 'NATS command connection closed; connecting again')
      void loop(1)
    })
    log.info({ servers, subject: `${config.subject}.>`, queueGroup: config.queueGroup }, 'NATS commands ready')
    return true
  }

  const pause = createPause()

  /** Tries again with backoff until connected or closed. */
  const loop = async (from: number): Promise<void> => {
    for (let n = from; !closing; n++) {
      await pause.wait(backoffDelay(n, { initialMs: 500, maxMs: 30_000 }))
      if (closing || (await attempt())) return
    }
  }

  if (!(await attempt())) void loop(1)

  return {
    stats: () => counts.read(),
    async close() {
      closing = true
      // A retry waiting for its turn stops; one connecting now closes what it gets (see attempt).
      pause.wake()
      const conn = nc
      nc = undefined
      if (conn === undefined) return
      // drain() lets requests already taken from the socket go out, then closes; on a stalled
      // link it never ends (a SIGTERM took 6 minutes): closed after DRAIN_MS.
      let timer: NodeJS.Timeout | undefined
      const late = new Promise<void>((r) => (timer = setTimeout(r, DRAIN_MS)))
      await Promise.race([conn.drain().catch(() => {}), late])
      clearTimeout(timer)
      await conn.close().catch(() => {})
    },
  }
}
