// Device commands over RabbitMQ RPC. A cloud caller publishes a request to the durable queue
// `config.queue` with `replyTo` (direct reply-to, `amq.rabbitmq.reply-to`, works) and a
// `correlationId`; the body is JSON:
//   { "device"?: string, "service", "version", "command", "payload"?: any,
//     "timeoutMs"?: number, "offline"?: "fail" | "hold", "traceparent"?: string }
// (no device, or `_`: any live device; no payload: `{}`; a `traceparent` AMQP header also works).
// The reply goes to `replyTo` through the default exchange with the same correlationId, content
// type application/json and the body the HTTP API answers with: `{ "result": … }`, or
// `{ "error": { code, message, details? } }` with the header `Outpost-Error: <code>`. The request is
// acknowledged after its reply is published. A request whose connection drops before that is
// delivered again by the broker (to this gateway once it is back, or another one), so its command
// may run twice: callers must take the first reply for a correlationId and ignore the rest. A
// request with the AMQP `timestamp` property has its deadline counted from then, not from when
// the gateway took it (a request that waited in the queue for a gateway that was down).
import { createHash } from 'node:crypto'
import amqp, { type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib'
import type { Logger } from 'pino'
import { backoffDelay, createPause } from '../../runtime/backoff.js'
import { ErrorCode, OutpostError, errorMessage, toWireError, type WireError } from '../../runtime/errors.js'
import { createLogLimiter } from '../../runtime/log-limiter.js'
import type { RabbitCommandsConfig } from './command-config.js'
import type { CommandRequest, CommandRouter } from './command-router.js'
import { commandRequest, createCommandStats, encodeReply, parseJsonBody, parseOffline, validTraceparent, type CommandFrontEnd } from './command-request.js'
import { quoted } from './shown.js'

/** Heartbeat asked of the broker, seconds: a silently dead link is noticed within two to three of them. */
const HEARTBEAT_S = 10
/** How long a connection attempt (and later the AMQP close handshake) may take. */
const CONNECT_TIMEOUT_MS = 10_000
const CLOSE_GRACE_MS = 2_000

/** One connection with its consuming channel. */
interface Session {
  readonly model: ChannelModel
  channel: Channel | undefined
  ended: boolean
  /**
   * Aborts when the session ends: its calls still waiting for their device (held while it is
   * offline) stop waiting, since the broker delivers their requests again on the next session.
   * Held on, each delivery of one request became one more call, all sent when the device came
   * back: one request ran 5 times, and its caller got no reply (found from outside).
   */
  readonly lost: AbortController
  /** The consumer's tag, once it consumes. */
  consumerTag?: string
}

/** Longest wait for requests in hand to be answered when the front end closes, ms. */
const DRAIN_MS = 2_000
/** Deliveries of one request after which it is dropped (each redelivery follows a lost connection while it was in hand). */
const MAX_DELIVERIES = 5
/** Redelivered requests remembered at once. */
const MAX_TRACKED = 1024

const KEYS = new Set(['device', 'service', 'version', 'command', 'payload', 'timeoutMs', 'offline', 'traceparent'])

/** The request a message stands for. @throws BAD_ARGUMENT for a body that cannot be read */
function readRequest(m: ConsumeMessage): CommandRequest {
  const doc = parseJsonBody(m.content)
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw new OutpostError(ErrorCode.BAD_ARGUMENT, 'the request body is not a JSON object { device?, service, version, command, payload?, timeoutMs?, offline? }')
  }
  const o = doc as Record<string, unknown>
  const extra = Object.keys(o).filter((k) => !KEYS.has(k))
  if (extra.length > 0) throw new OutpostError(ErrorCode.BAD_ARGUMENT, `the request has unknown keys: ${extra.slice(0, 5).map((k) => quoted(k, 32)).join(', ')}`)
  const name = (key: string, optional: boolean): string | undefined => {
    const x = o[key]
    if (x === undefined && optional) return undefined
    if (typeof x !== 'string') throw new OutpostError(ErrorCode.BAD_ARGUMENT, `the request's ${key} is ${x === undefined ? 'missing' : 'not a string'}`)
    return x
  }
  const device = name('device', true)
  const t = o.timeoutMs
  if (t !== undefined && typeof t !== 'number') throw new OutpostError(ErrorCode.BAD_ARGUMENT, "the request's timeoutMs is not a number of milliseconds")
  const off = o.offline
  if (off !== undefined && typeof off !== 'string') throw new OutpostError(ErrorCode.BAD_ARGUMENT, "the request's offline is not fail or hold")
  const offline = parseOffline(off, 'offline')
  const target = { ...(device === undefined || device === '_' ? {} : { device }), service: name('service', false)!, version: name('version', false)!, command: name('command', false)! }
  const traceparent = validTraceparent(o.traceparent) ?? m.properties.headers?.traceparent
  return commandRequest(target, o.payload === undefined ? {} : o.payload, { timeoutMs: t, offline, traceparent, sentAt: sentAtOf(m.properties.timestamp) })
}

/**
 * The AMQP `timestamp` of a request as epoch ms: seconds by the AMQP spec (read as the end of that
 * second, so a deadline is never cut short by its rounding), milliseconds when the caller put
 * Date.now() there. Undefined when it is not set or not a time.
 */
export function sentAtOf(ts: unknown): number | undefined {
  if (typeof ts !== 'number' || !Number.isFinite(ts) || ts <= 0) return undefined
  return ts < 1e11 ? (Math.floor(ts) + 1) * 1000 - 1 : ts
}

/**
 * Starts answering command requests from RabbitMQ. It resolves once the first connection attempt
 * is over; when the broker cannot be reached (or refuses the setup), it logs why and keeps trying
 * with backoff, as after any later loss, instead of failing: the gateway's local device network
 * must not depend on the cloud link being up.
 */
export async function startRabbitCommands(opts: { config: RabbitCommandsConfig; router: CommandRouter; log: Logger }): Promise<CommandFrontEnd> {
  const { config, router } = opts
  const log = opts.log.child({ frontEnd: 'rabbitmq-commands' })
  const troubles = createLogLimiter(log)
  const counts = createCommandStats()
  let current: Session | undefined
  let closing = false
  let looping = false
  let where = 'the broker'
  /** Requests being handled. */
  const inHand = new Set<Promise<void>>()

  /** Closes politely, or destroys the socket of a broker that does not answer. */
  const teardown = async (s: Session): Promise<void> => {
    let timer: NodeJS.Timeout | undefined
    const polite = await Promise.race([
      s.model.close().then(
        () => true,
        () => true, // closed already
      ),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(false), CLOSE_GRACE_MS))),
    ])
    clearTimeout(timer)
    if (!polite) (s.model.connection as unknown as { stream?: { destroy?: () => void } }).stream?.destroy?.()
  }

  /** The session is gone (link cut, channel closed, consumer cancelled): connect again unless closing. */
  const lose = (s: Session, why: string): void => {
    if (s.ended) return
    s.ended = true
    s.lost.abort()
    if (current === s) current = undefined
    void teardown(s)
    if (closing) return
    log.warn({ server: where, why }, 'RabbitMQ command link lost; reconnecting')
    void loop()
  }

  /**
   * Deliveries of requests the broker delivered again, by request (replyTo, correlation id and
   * body). A replyTo that looks like a direct reply-to name but is not one made RabbitMQ close the
   * connection (541 INTERNAL_ERROR) when the reply went to it: the request, not acknowledged, came
   * back on the next connection, ran on the device again and closed that one too, twice a second,
   * for ever, and no other request was answered. Bounded: the oldest are forgotten.
   */
  const deliveries = new Map<string, number>()
  const redelivered = (m: ConsumeMessage, replyTo: string): number => {
    const correlationId: unknown = m.properties.correlationId
    const key = createHash('sha256').update(replyTo).update('\u0000').update(typeof correlationId === 'string' ? correlationId : '').update('\u0000').update(m.content).digest('base64')
    // The first delivery was not counted (only redeliveries are): this is at least the second.
    const n = (deliveries.get(key) ?? 1) + 1
    deliveries.delete(key)
    deliveries.set(key, n)
    if (deliveries.size > MAX_TRACKED) deliveries.delete(deliveries.keys().next().value!)
    return n
  }

  const handle = async (s: Session, m: ConsumeMessage): Promise<void> => {
    const replyTo: unknown = m.properties.replyTo
    if (typeof replyTo !== 'string' || replyTo === '') {
      counts.fail('NO_REPLY')
      troubles.warn('no replyTo', { queue: config.queue }, 'a command request without replyTo was dropped (nobody to answer)')
      try {
        s.channel?.ack(m)
      } catch {
        // The channel is gone; the broker delivers the request again and it is dropped then.
      }
      return
    }
    // The reply goes through the default exchange to the queue replyTo names: only to a reply
    // queue, never into a queue the caller may not publish to itself (the events' own).
    if (!config.replyToPrefixes.some((p) => replyTo.startsWith(p))) {
      counts.fail('REPLY_REFUSED')
      troubles.warn('reply refused', { queue: config.queue, replyTo: replyTo.slice(0, 200) }, `a command request whose replyTo does not start with ${config.replyToPrefixes.join(', ')} was dropped, nothing sent (commands.rabbitmq.replyToPrefixes)`)
      try {
        s.channel?.ack(m)
      } catch {
        // The channel is gone; the broker delivers the request again and it is dropped then.
      }
      return
    }
    // A request that keeps coming back (each time its connection was lost before its ack) is
    // dropped after MAX_DELIVERIES: see `deliveries`.
    if (m.fields.redelivered) counts.redelivery()
    if (m.fields.redelivered && redelivered(m, replyTo) > MAX_DELIVERIES) {
      counts.fail('REDELIVERED')
      troubles.warn('redelivered', { queue: config.queue, replyTo: replyTo.slice(0, 200) }, `a command request delivered ${MAX_DELIVERIES} times, its connection lost each time before it was done, was dropped (a replyTo the broker fails on?)`)
      try {
        s.channel?.ack(m)
      } catch {
        // The channel is gone; it comes back once more and is dropped then.
      }
      return
    }
    let outcome: { result: unknown } | { error: WireError }
    try {
      outcome = { result: await router.call({ ...readRequest(m), signal: s.lost.signal }, config.allow) }
    } catch (err) {
      outcome = { error: toWireError(err) }
    }
    const { body, error } = encodeReply(outcome)
    const channel = s.channel
    // The delivery tag belongs to the channel it came on: after a loss the broker delivers the request again.
    if (s.ended || channel === undefined) return void counts.fail('REPLY_LOST')
    const correlationId: unknown = m.properties.correlationId
    try {
      channel.sendToQueue(replyTo, body, {
        contentType: 'application/json',
        ...(typeof correlationId === 'string' ? { correlationId } : {}),
        headers: error === undefined ? {} : { 'Outpost-Error': error },
      })
      channel.ack(m)
    } catch (err) {
      counts.fail('REPLY_LOST')
      troubles.warn('reply lost', { err: errorMessage(err) }, 'a command reply could not be sent over RabbitMQ')
      return
    }
    if (error === undefined) counts.ok()
    else counts.fail(error)
  }

  /** One connection attempt; true when connected and consuming. */
  const attempt = async (): Promise<boolean> => {
    let url: URL
    try {
      url = new URL(config.url)
    } catch {
      troubles.error('bad url', {}, 'commands.rabbitmq.url is not a valid amqp:// URL')
      return false
    }
    if (!url.searchParams.has('heartbeat')) url.searchParams.set('heartbeat', String(HEARTBEAT_S))
    where = `${url.hostname}:${url.port || (url.protocol === 'amqps:' ? 5671 : 5672)}`
    let model: ChannelModel
    try {
      model = await amqp.connect(url.toString(), { clientProperties: { connection_name: 'outpost-gateway-commands' }, timeout: CONNECT_TIMEOUT_MS })
    } catch (err) {
      troubles.warn('unreachable', { server: where, err: errorMessage(err) }, `TARGET_UNAVAILABLE: cannot reach RabbitMQ at ${where} for commands; trying again with backoff`)
      return false
    }
    const s: Session = { model, channel: undefined, ended: false, lost: new AbortController() }
    model.on('error', (err: Error) => troubles.warn('connection error', { err: errorMessage(err) }, 'RabbitMQ command connection error'))
    model.on('close', () => lose(s, 'connection closed'))
    try {
      const ch = await model.createChannel()
      s.channel = ch
      ch.on('error', (err: Error) => troubles.warn('channel error', { err: errorMessage(err) }, 'RabbitMQ command channel error'))
      ch.on('close', () => lose(s, 'channel closed'))
      await ch.assertQueue(config.queue, { durable: true })
      await ch.prefetch(config.prefetch)
      // Not awaited per message: up to `prefetch` requests run side by side.
      const consumer = await ch.consume(config.queue, (m) => {
        if (m === null) return closing ? undefined : lose(s, `the broker cancelled the consumer (queue ${config.queue} deleted?)`)
        const p = handle(s, m).catch((err: unknown) => troubles.error('handler failed', { err: errorMessage(err) }, 'a RabbitMQ command request failed unexpectedly'))
        inHand.add(p)
        void p.finally(() => inHand.delete(p))
      })
      s.consumerTag = consumer.consumerTag
    } catch (err) {
      troubles.error('setup failed', { server: where, queue: config.queue, err: errorMessage(err) }, `cannot consume command requests from queue ${config.queue} (trying again)`)
      s.ended = true
      await teardown(s)
      return false
    }
    if (closing || s.ended) {
      s.ended = true
      await teardown(s)
      return false
    }
    current = s
    log.info({ server: where, queue: config.queue, prefetch: config.prefetch }, 'RabbitMQ commands ready')
    return true
  }

  const pause = createPause()

  /** Tries again with backoff until connected or closed; one loop at a time. */
  const loop = async (): Promise<void> => {
    if (looping) return
    looping = true
    try {
      for (let n = 1; !closing; n++) {
        await pause.wait(backoffDelay(n, { initialMs: 500, maxMs: 30_000 }))
        if (closing || (await attempt())) return
      }
    } finally {
      looping = false
    }
  }

  if (!(await attempt())) void loop()

  return {
    stats: () => counts.read(),
    async close() {
      closing = true
      pause.wake()
      const s = current
      current = undefined
      if (s === undefined || s.ended) return
      // No new requests; those in hand are answered and acknowledged, for up to DRAIN_MS (a device
      // that answered while the gateway stopped ran the command again at its next start). What
      // is left (a call held for an offline device) goes back to the queue, unacknowledged, for
      // another gateway or the next start.
      // Each step bounded: on a stalled link the broker answers nothing.
      const within = (p: Promise<unknown> | undefined, ms: number): Promise<unknown> => Promise.race([p?.catch(() => {}), new Promise((r) => setTimeout(r, ms).unref())])
      if (s.consumerTag !== undefined) await within(s.channel?.cancel(s.consumerTag), CLOSE_GRACE_MS)
      await within(Promise.allSettled([...inHand]), DRAIN_MS)
      s.ended = true
      s.lost.abort()
      // The channel's close handshake first: the replies just sent reach the broker before it.
      await within(s.channel?.close(), CLOSE_GRACE_MS)
      await teardown(s)
    },
  }
}
