// The RabbitMQ (AMQP 0-9-1) cloud target: publishes each forwarded event to an exchange on a
// confirm channel and settles the send when the broker confirms it. Ordering, retries, backoff
// and dead letters belong to the pump (see target.ts); this file only speaks AMQP and turns what
// the broker and amqplib report into TARGET_UNAVAILABLE (try again later) or TARGET_REJECTED
// (never going to work as configured / for this message).
import amqp, { type ChannelModel, type ConfirmChannel, type Options } from 'amqplib'
import type { Logger } from 'pino'
import { errorMessage, type OutpostError } from '../../../runtime/errors.js'
import type { RabbitTargetConfig } from '../forward-config.js'
import { dedupeKey, targetRejected, targetUnavailable, type ForwardMessage, type ForwardTarget, type SendResult } from '../target.js'

/** Heartbeat asked of the broker, seconds: a silently dead link is noticed within two to three of them. */
const HEARTBEAT_S = 10
/** How long close() lets the AMQP close handshake run before the socket is simply destroyed. */
const CLOSE_GRACE_MS = 2_000

/** One send from the call until its confirm (or failure). */
interface Entry {
  readonly message: ForwardMessage
  readonly resolve: (result: SendResult) => void
  readonly reject: (err: OutpostError) => void
  timer: NodeJS.Timeout | undefined
  done: boolean
}

/** One connection and its confirm channel; a new one is made by every successful connect(). */
interface Session {
  readonly model: ChannelModel
  channel: ConfirmChannel | undefined
  /** Set up completely: its loss is reported to onDown listeners. */
  live: boolean
  /** Lost or closed: nothing more is published on it. */
  ended: boolean
  /** Ended by close(), not lost. */
  closedByUs: boolean
  /** The last error the channel or connection reported (it comes before their 'close'). */
  lastError: Error | undefined
  /** Published, waiting for the broker's confirm. */
  readonly inFlight: Set<Entry>
  /** Not yet published: the channel's write buffer is full, they go out in call order on 'drain'. */
  readonly waiting: Entry[]
  writeBlocked: boolean
  tornDown: Promise<void> | undefined
}

/**
 * Creates the RabbitMQ target `name`. Nothing connects until `connect()`; the pump calls it again
 * (with backoff) after every loss, and each call builds a fresh connection and confirm channel.
 */
export function createRabbitTarget(name: string, config: RabbitTargetConfig, opts: { logger?: Logger } = {}): ForwardTarget {
  const log = opts.logger?.child({ target: name })
  const exchange = config.exchange.name
  const downListeners = new Set<(err: Error) => void>()
  let current: Session | undefined
  let connecting: Promise<void> | undefined
  /** Bumped by close(): a connect() that started before it gives up. */
  let epoch = 0
  /** The broker's max message size, once it told us (a channel closed for a too-large body). */
  let learnedMaxBody: number | undefined

  const unavailable = (reason: string, cause?: unknown): OutpostError => targetUnavailable(name, reason, cause)
  const rejected = (reason: string, cause?: unknown): OutpostError => targetRejected(name, reason, cause)

  function settle(session: Session | undefined, entry: Entry, err?: OutpostError): void {
    if (entry.done) return
    entry.done = true
    if (entry.timer) clearTimeout(entry.timer)
    session?.inFlight.delete(entry)
    if (err) entry.reject(err)
    else entry.resolve({ duplicate: false })
  }

  /** The session is gone (link cut, channel closed by the broker, confirm timeout): fail what it holds, tell the pump. */
  function lose(session: Session, cause: Error): void {
    if (session.ended) return
    session.ended = true
    if (current === session) current = undefined
    const tooLarge = tooLargeLimit(session.lastError)
    if (tooLarge !== undefined) learnedMaxBody = tooLarge
    const down = session.closedByUs
      ? unavailable(`closed: ${errorMessage(cause)}`, cause)
      : unavailable(`connection lost: ${errorMessage(session.lastError ?? cause)}`, session.lastError ?? cause)
    for (const entry of [...session.waiting.splice(0), ...session.inFlight]) {
      const size = entry.message.body.byteLength
      settle(session, entry, tooLarge !== undefined && size > tooLarge ? tooLargeError(entry.message, tooLarge) : down)
    }
    void teardown(session)
    if (!session.live || session.closedByUs) return
    log?.warn({ err: errorMessage(down) }, 'rabbitmq target down')
    for (const listener of [...downListeners]) {
      try {
        listener(down)
      } catch (err) {
        log?.error({ err: errorMessage(err) }, 'onDown listener threw')
      }
    }
  }

  function tooLargeError(message: ForwardMessage, limit: number): OutpostError {
    return rejected(`message ${message.id} has a ${message.body.byteLength}-byte body; the broker takes at most ${limit} bytes (max_message_size)`)
  }

  /** Closes the connection politely, or destroys its socket when the broker does not answer in time. */
  function teardown(session: Session): Promise<void> {
    session.tornDown ??= (async () => {
      let timer: NodeJS.Timeout | undefined
      const closed = await Promise.race([
        session.model.close().then(
          () => true,
          () => true, // already closed: amqplib reports that as an error
        ),
        new Promise<boolean>((r) => (timer = setTimeout(() => r(false), CLOSE_GRACE_MS))),
      ])
      clearTimeout(timer)
      if (!closed) socketOf(session.model)?.destroy()
    })()
    return session.tornDown
  }

  function publishNow(session: Session, entry: Entry): void {
    const { message } = entry
    const channel = session.channel
    if (!channel || session.ended) return settle(session, entry, unavailable('not connected'))
    const body = Buffer.from(message.body.buffer, message.body.byteOffset, message.body.byteLength)
    const props: Options.Publish = {
      persistent: true,
      mandatory: false,
      messageId: dedupeKey(message),
      contentType: message.contentType,
      headers: { ...message.headers },
      timestamp: Math.floor(message.receivedAt / 1000),
      appId: 'outpost-gateway',
    }
    session.inFlight.add(entry)
    let ok: boolean
    try {
      ok = channel.publish(exchange, message.subject, body, props, (err: unknown) => onConfirm(session, entry, err))
    } catch (err) {
      if (err instanceof RangeError || err instanceof TypeError) {
        // Nothing was written (amqplib encodes before writing): this message can never go out as is.
        return settle(session, entry, rejected(`message ${message.id} cannot be encoded: ${errorMessage(err)}`, err))
      }
      settle(session, entry, unavailable(`publish failed: ${errorMessage(err)}`, err))
      return lose(session, err instanceof Error ? err : new Error(errorMessage(err)))
    }
    if (!ok) session.writeBlocked = true
  }

  function onConfirm(session: Session, entry: Entry, err: unknown): void {
    if (entry.done) return
    if (err === null || err === undefined) return settle(session, entry)
    // amqplib fails every unconfirmed publish with 'channel closed' when the channel goes; a nack
    // (RabbitMQ's internal error) leaves the channel open, and the pump sends the message again.
    if (!session.ended && errorMessage(err) === 'message nacked') {
      return settle(session, entry, unavailable(`broker nacked message ${entry.message.id}`, err))
    }
    lose(session, err instanceof Error ? err : new Error(errorMessage(err)))
  }

  function flush(session: Session): void {
    session.writeBlocked = false
    while (!session.writeBlocked && !session.ended) {
      const entry = session.waiting.shift()
      if (!entry) return
      if (!entry.done) publishNow(session, entry)
    }
  }

  async function open(myEpoch: number): Promise<void> {
    let url: URL
    try {
      url = new URL(config.url)
    } catch (err) {
      throw rejected('url is not a valid amqp:// URL', err)
    }
    if (!url.searchParams.has('heartbeat')) url.searchParams.set('heartbeat', String(HEARTBEAT_S))
    const where = `${url.hostname}:${url.port || (url.protocol === 'amqps:' ? 5671 : 5672)}`
    let model: ChannelModel
    try {
      model = await amqp.connect(url.toString(), {
        clientProperties: { connection_name: `outpost-gateway:${name}` },
        timeout: config.confirmTimeoutMs,
        noDelay: true,
      })
    } catch (err) {
      throw classify(err, `cannot connect to ${where}`)
    }
    const session: Session = {
      model, channel: undefined, live: false, ended: false, closedByUs: false, lastError: undefined,
      inFlight: new Set(), waiting: [], writeBlocked: false, tornDown: undefined,
    }
    model.on('error', (err: Error) => {
      session.lastError = err
      if (!session.closedByUs) log?.warn({ err: errorMessage(err) }, 'rabbitmq connection error')
    })
    model.on('close', (err?: Error) => lose(session, err ?? new Error('connection closed')))
    model.on('blocked', (reason: string) => log?.warn({ reason }, 'rabbitmq broker blocks publishing (resource alarm)'))
    model.on('unblocked', () => log?.info('rabbitmq broker unblocked publishing'))
    // Until setup completes, a deadline bounds it: a broker that accepts but never answers counts as unreachable.
    let deadline: NodeJS.Timeout | undefined
    const timedOut = new Promise<never>((_, reject) => {
      deadline = setTimeout(() => reject(unavailable(`no answer from ${where} within ${config.confirmTimeoutMs} ms while setting up`)), config.confirmTimeoutMs)
    })
    try {
      await Promise.race([setUp(session), timedOut])
      if (myEpoch !== epoch) throw unavailable('closed while connecting')
      if (session.ended) throw unavailable(`connection lost while setting up: ${errorMessage(session.lastError)}`)
    } catch (err) {
      session.closedByUs = true
      lose(session, err instanceof Error ? err : new Error(errorMessage(err)))
      await teardown(session)
      throw classify(err, 'setup refused')
    } finally {
      clearTimeout(deadline)
    }
    session.live = true
    current = session
    log?.info({ server: where, exchange }, 'rabbitmq target connected')
  }

  async function setUp(session: Session): Promise<void> {
    const channel = await session.model.createConfirmChannel()
    session.channel = channel
    channel.on('error', (err: Error) => {
      session.lastError = err
      if (!session.closedByUs) log?.warn({ err: errorMessage(err) }, 'rabbitmq channel error')
    })
    channel.on('close', () => lose(session, session.lastError ?? new Error('channel closed')))
    channel.on('drain', () => flush(session))
    const ex = config.exchange
    if (ex.create) {
      await step(channel.assertExchange(ex.name, ex.type, { durable: true }), `exchange '${ex.name}' (${ex.type}) cannot be declared`)
    } else {
      await step(channel.checkExchange(ex.name), `exchange '${ex.name}' is not usable (exchange.create is false, so it must exist)`)
    }
    if (config.queue) {
      const q = config.queue
      await step(channel.assertQueue(q.name, { durable: true }), `queue '${q.name}' cannot be declared`)
      await step(channel.bindQueue(q.name, ex.name, q.bindingKey), `queue '${q.name}' cannot be bound to '${ex.name}' with '${q.bindingKey}'`)
    }
  }

  /** Awaits one setup operation and names it in the error (the broker's text says why). */
  async function step<T>(op: Promise<T>, what: string): Promise<T> {
    try {
      return await op
    } catch (err) {
      throw classify(err, what)
    }
  }

  /** Reply codes that mean "this will not work until someone changes the setup": everything else may pass. */
  function classify(err: unknown, what: string): OutpostError {
    if (isOutpost(err)) return err
    const text = errorMessage(err)
    const code = (err as { code?: unknown } | null)?.code
    const reply = typeof code === 'number' ? code : Number(/\b(\d{3}) \([A-Z_-]+\)/.exec(text)?.[1] ?? NaN)
    const permanent: Record<number, string> = {
      403: 'access refused (ACCESS_REFUSED): check the user, password and permissions in the url',
      404: 'not found (NOT_FOUND)',
      405: 'resource locked (RESOURCE_LOCKED)',
      406: 'exists with other settings (PRECONDITION_FAILED)',
      530: 'not allowed (NOT_ALLOWED): check the vhost and its permissions',
    }
    const why = permanent[reply]
    if (why) return rejected(`${what}: ${why}; broker says: ${serverText(text)}`, err)
    if (text.startsWith('Expected amqp: or amqps:')) return rejected(`url: ${text}`, err)
    // amqplib drops the reply code of a close that answers connection.open: RabbitMQ sends it for
    // a vhost that does not exist or that the user may not use (530 NOT_ALLOWED).
    if (text.startsWith('Expected ConnectionOpenOk; got <ConnectionClose')) {
      return rejected(`${what}: the broker refused to open the vhost (it does not exist, or the user has no permission for it)`, err)
    }
    return unavailable(`${what}: ${typeof code === 'string' ? `${code} ` : ''}${text}`, err)
  }

  return {
    name,
    type: 'rabbitmq',

    connect(): Promise<void> {
      if (current && !current.ended) return Promise.resolve()
      connecting ??= open(epoch).finally(() => {
        connecting = undefined
      })
      return connecting
    },

    send(message: ForwardMessage): Promise<SendResult> {
      return new Promise<SendResult>((resolve, reject) => {
        const session = current
        if (!session || session.ended) return reject(unavailable('not connected'))
        if (learnedMaxBody !== undefined && message.body.byteLength > learnedMaxBody) {
          return reject(tooLargeError(message, learnedMaxBody))
        }
        const entry: Entry = { message, resolve, reject, timer: undefined, done: false }
        entry.timer = setTimeout(() => {
          if (entry.done) return
          // The link is taken for lost: the pump reconnects and sends again.
          settle(session, entry, unavailable(`no confirm for message ${message.id} within ${config.confirmTimeoutMs} ms`))
          lose(session, new Error('confirm timeout'))
        }, config.confirmTimeoutMs)
        if (session.writeBlocked || session.waiting.length > 0) session.waiting.push(entry)
        else publishNow(session, entry)
      })
    },

    onDown(listener: (err: Error) => void): () => void {
      downListeners.add(listener)
      return () => void downListeners.delete(listener)
    },

    async close(): Promise<void> {
      epoch++
      await connecting?.catch(() => {})
      const session = current
      if (!session) return
      session.closedByUs = true
      lose(session, new Error('target closed by the gateway'))
      await teardown(session)
    },
  }
}

function isOutpost(err: unknown): err is OutpostError {
  return typeof err === 'object' && err !== null && (err as { name?: unknown }).name === 'OutpostError'
}

/** The broker's own words from an amqplib error text (`… with message "…"`), or the whole text. */
function serverText(text: string): string {
  return /with message "(.*)"/.exec(text)?.[1] ?? text
}

/** The limit from RabbitMQ's "message size N is larger than (configured) max size M" channel close, if that was it. */
function tooLargeLimit(err: Error | undefined): number | undefined {
  if (!err || (err as { code?: unknown }).code !== 406) return undefined
  const m = /message size \d+ is larger than (?:configured )?max size (\d+)/.exec(err.message)
  return m ? Number(m[1]) : undefined
}

/**
 * The connection's socket. amqplib keeps it as `connection.stream` and offers no public way to
 * drop a connection whose broker stopped answering; close() would wait for a CloseOk forever.
 */
function socketOf(model: ChannelModel): { destroy(): void } | undefined {
  const stream = (model.connection as unknown as { stream?: { destroy?: unknown } }).stream
  return stream && typeof stream.destroy === 'function' ? (stream as { destroy(): void }) : undefined
}
