// The NATS JetStream cloud target: publishes each forwarded event to a stream and settles the
// send on the server's PubAck. Ordering, retries, backoff and dead letters belong to the pump (see
// target.ts); this file only speaks NATS and turns what the server and nats.js report into
// TARGET_UNAVAILABLE (try again later) or TARGET_REJECTED (never going to work as configured / for
// this message).
import { redactUrl } from '../../../runtime/redact-url.js'
import { jetstreamManager, StorageType, type JetStreamManager } from '@nats-io/jetstream'
import { connect, createInbox, nanos, type Msg, type NatsConnection } from '@nats-io/transport-node'
import type { Logger } from 'pino'
import { errorMessage, isOutpostError, type OutpostError } from '../../../runtime/errors.js'
import type { NatsTargetConfig } from '../forward-config.js'
import { natsMessageHeaders } from './nats-headers.js'
import { subjectProblem } from './nats-subject.js'
import { dedupeKey, targetRejected, targetUnavailable, type ForwardMessage, type ForwardTarget, type SendResult } from '../target.js'

/** Ping interval asked of the client, ms: a silently dead link is noticed within two to three of them. */
const PING_MS = 10_000
/** How long close() lets a drain run before the connection is simply closed. */
const CLOSE_GRACE_MS = 2_000
/** JetStream API error codes that mean "this message can never be stored". */
const MESSAGE_REFUSED: Record<number, string> = {
  10054: 'the stream refuses it as too large (max_msg_size)',
  10097: 'its headers are larger than the stream takes',
}
/** JetStream API error codes at setup that will not change until someone changes the configuration. */
const SETUP_REFUSED: Record<number, string> = {
  10065: 'its subjects overlap with another stream',
  10039: 'JetStream is not enabled for this account',
  10052: 'the stream configuration is invalid',
  10058: 'a stream of that name exists with another configuration',
}

/** One send from the call until its PubAck (or failure). */
interface Entry {
  readonly resolve: (result: SendResult) => void
  readonly reject: (err: OutpostError) => void
  done: boolean
  /** Its reply subject's last token, while it waits for the PubAck. */
  token: string
  readonly message: ForwardMessage
  sentAt: number
}

/** One connection; a new one is made by every successful connect(). */
interface Session {
  readonly nc: NatsConnection
  /**
   * Every publish asks for its PubAck on `<inbox>.<token>`, and one subscription to `<inbox>.*`
   * takes them all: JetStream's asynchronous publish, with no per-message request, timer or
   * error object (nats.js's `js.publish` makes all three, a quarter of the CPU of forwarding).
   */
  readonly inbox: string
  nextToken: number
  /** Sends waiting for their PubAck, by token, oldest first. */
  readonly inFlight: Map<string, Entry>
  sweep?: NodeJS.Timeout
  ended: boolean
  closedByUs: boolean
}

/**
 * Creates the NATS JetStream target `name`. Nothing connects until `connect()`; the pump calls it
 * again (with backoff) after every loss, and each call builds a fresh connection, because the
 * client's own reconnect is off (the pump owns retry policy).
 */
export function createNatsTarget(name: string, config: NatsTargetConfig, opts: { logger?: Logger } = {}): ForwardTarget {
  const log = opts.logger?.child({ target: name })
  const downListeners = new Set<(err: Error) => void>()
  let current: Session | undefined
  let connecting: Promise<void> | undefined
  /** Bumped by close(): a connect() that started before it gives up. */
  let epoch = 0

  const unavailable = (reason: string, cause?: unknown): OutpostError => targetUnavailable(name, reason, cause)
  const rejected = (reason: string, cause?: unknown): OutpostError => targetRejected(name, reason, cause)

  function settle(session: Session, entry: Entry, result: SendResult | OutpostError): void {
    if (entry.done) return
    entry.done = true
    session.inFlight.delete(entry.token)
    if (isOutpostError(result)) entry.reject(result)
    else entry.resolve(result)
  }

  /** The session is gone (link cut, server closed it, confirm timeout, close()): fail what it holds, tell the pump. */
  function lose(session: Session, cause: unknown): void {
    if (session.ended) return
    session.ended = true
    clearInterval(session.sweep)
    if (current === session) current = undefined
    const down = session.closedByUs ? unavailable('closed by the gateway', cause) : unavailable(`connection lost: ${errorMessage(cause)}`, cause)
    for (const entry of [...session.inFlight.values()]) settle(session, entry, down)
    if (!session.nc.isClosed()) void session.nc.close().catch(() => {})
    if (session.closedByUs) return
    log?.warn({ err: errorMessage(down) }, 'nats target down')
    for (const listener of [...downListeners]) {
      try {
        listener(down)
      } catch (err) {
        log?.error({ err: errorMessage(err) }, 'onDown listener threw')
      }
    }
  }

  /** Sorts a publish that failed at once (before it went out) into "never for this message" and "try again later". */
  function classifySend(message: ForwardMessage, err: unknown): OutpostError {
    for (const e of causes(err)) {
      const kind = e instanceof Error ? e.name : ''
      const text = errorMessage(e)
      if (/max_payload|payload/i.test(text) && /exceed|too large|max/i.test(text)) return rejected(`message ${message.id} (${message.body.byteLength}-byte body with headers) exceeds the server's max_payload`, err)
      if (kind === 'InvalidSubjectError') return rejected(`message ${message.id}: invalid subject '${message.subject}'`, err)
    }
    return unavailable(`publish failed: ${errorMessage(err)}`, err)
  }

  /** A PubAck (or the server's word instead of one) for the send `entry`. */
  function acked(session: Session, entry: Entry, msg: Msg): void {
    const { message } = entry
    // No stream takes the subject (or JetStream is off): the server answers 503, no responders.
    if (msg.headers?.code === 503) return settle(session, entry, unavailable(`no stream answers on '${message.subject}' right now`))
    let ack: { stream?: unknown; duplicate?: unknown; error?: { code?: unknown; err_code?: unknown; description?: unknown } }
    try {
      ack = JSON.parse(textOf(msg.data)) as typeof ack
    } catch (err) {
      return settle(session, entry, unavailable(`an answer to message ${message.id} is not a PubAck: ${errorMessage(err)}`))
    }
    if (ack.error !== undefined) {
      const code = typeof ack.error.err_code === 'number' ? ack.error.err_code : undefined
      const text = `${String(ack.error.description ?? 'error')} (${String(ack.error.code ?? '?')}/${String(code ?? '?')})`
      if (code !== undefined && MESSAGE_REFUSED[code]) return settle(session, entry, rejected(`message ${message.id}: ${MESSAGE_REFUSED[code]} (${text})`))
      return settle(session, entry, unavailable(`the stream did not store message ${message.id}: ${text}`))
    }
    if (typeof ack.stream !== 'string' || ack.stream === '') return settle(session, entry, unavailable(`an answer to message ${message.id} is not a PubAck`))
    settle(session, entry, { duplicate: ack.duplicate === true })
  }

  function publish(session: Session, entry: Entry, message: ForwardMessage): void {
    const problem = subjectProblem(message.subject)
    if (problem) return settle(session, entry, rejected(`message ${message.id}: invalid subject '${message.subject}': ${problem}`))
    let hdrs
    try {
      hdrs = natsMessageHeaders(message.headers, [['Content-Type', message.contentType], ['Nats-Msg-Id', dedupeKey(message)]])
    } catch (err) {
      return settle(session, entry, rejected(`message ${message.id} has a header NATS cannot carry: ${errorMessage(err)}`, err))
    }
    entry.token = (session.nextToken++).toString(36)
    entry.sentAt = Date.now()
    session.inFlight.set(entry.token, entry)
    try {
      // Written to the connection now, so sends go out in the order they are made.
      session.nc.publish(message.subject, message.body, { reply: `${session.inbox}.${entry.token}`, headers: hdrs })
    } catch (err) {
      settle(session, entry, session.ended ? unavailable(`connection lost: ${errorMessage(err)}`, err) : classifySend(message, err))
    }
  }

  /** Takes a missing PubAck for a lost link: the pump reconnects and sends again (the msg id keeps it stored once). */
  function sweep(session: Session): void {
    const first = session.inFlight.values().next()
    if (first.done === true) return
    const oldest = first.value
    if (Date.now() - oldest.sentAt < config.confirmTimeoutMs) return
    lose(session, unavailable(`no PubAck for message ${oldest.message.id} within ${config.confirmTimeoutMs} ms`))
  }

  /** Permission errors the server sends about our publishes (or the PubAck inbox) arrive on the status stream. */
  async function watch(session: Session): Promise<void> {
    for await (const s of session.nc.status()) {
      if (s.type !== 'error' || !(s.error instanceof Error) || s.error.name !== 'PermissionViolationError') continue
      const pe = s.error as Error & { operation?: string; subject?: string }
      if (pe.operation === 'publish') {
        for (const entry of [...session.inFlight.values()]) {
          if (entry.message.subject === pe.subject) settle(session, entry, rejected(`message ${entry.message.id}: publishing to '${entry.message.subject}' is not permitted: ${pe.message}`, pe))
        }
      } else if (pe.subject === `${session.inbox}.*`) {
        lose(session, unavailable(`the server does not let the gateway subscribe to its PubAck inbox '${session.inbox}.*': ${pe.message}`, pe))
      }
    }
  }

  async function open(myEpoch: number): Promise<void> {
    let nc: NatsConnection
    try {
      nc = await connect({
        servers: config.servers,
        name: `outpost-gateway:${name}`,
        reconnect: false,
        timeout: config.confirmTimeoutMs,
        pingInterval: PING_MS,
        maxPingOut: 2,
        // No stack captured ahead for every publish (two Error objects each, a tenth of the CPU
        // of forwarding): failures are sorted by their name and message, not by where they came from.
        noAsyncTraces: true,
        ...(config.user !== undefined ? { user: config.user } : {}),
        ...(config.pass !== undefined ? { pass: config.pass } : {}),
        ...(config.token !== undefined ? { token: config.token } : {}),
      })
    } catch (err) {
      const kind = err instanceof Error ? err.name : ''
      if (kind === 'AuthorizationError' || kind === 'UserAuthenticationExpiredError') throw rejected(`the server refused the credentials: ${errorMessage(err)}`, err)
      throw unavailable(`cannot connect to ${redactUrl(config.servers.join(', '))}: ${redactUrl(errorMessage(err))}`, err)
    }
    const session: Session = { nc, inbox: createInbox(), nextToken: 0, inFlight: new Map(), ended: false, closedByUs: false }
    void nc.closed().then((err) => lose(session, err ?? new Error('connection closed by the server')))
    void watch(session).catch(() => {})
    nc.subscribe(`${session.inbox}.*`, {
      callback: (err, msg) => {
        if (err !== null) return
        const entry = session.inFlight.get(msg.subject.slice(session.inbox.length + 1))
        if (entry !== undefined) acked(session, entry, msg)
      },
    })
    session.sweep = setInterval(() => sweep(session), Math.max(50, Math.min(1_000, config.confirmTimeoutMs >> 2)))
    session.sweep.unref()
    try {
      await setUp(nc)
      if (myEpoch !== epoch) throw unavailable('closed while connecting')
      if (session.ended) throw unavailable('connection lost while setting up')
    } catch (err) {
      session.closedByUs = true
      lose(session, err)
      await nc.closed()
      throw isOutpostError(err) ? err : unavailable(`setup failed: ${errorMessage(err)}`, err)
    }
    current = session
    log?.info({ servers: config.servers.map(redactUrl), stream: config.stream.name }, 'nats target connected')
  }

  /** Creates the stream or binds to it, and checks that it takes the subjects the template makes. */
  async function setUp(nc: NatsConnection): Promise<void> {
    const s = config.stream
    let jsm: JetStreamManager
    try {
      jsm = await jetstreamManager(nc, { timeout: config.confirmTimeoutMs })
    } catch (err) {
      throw classifySetup(err, 'JetStream is not usable')
    }
    let subjects: string[]
    try {
      subjects = (await jsm.streams.info(s.name)).config.subjects ?? []
    } catch (err) {
      if (jsApiCode(err) !== 10059) throw classifySetup(err, `stream '${s.name}' cannot be read`)
      if (!s.create) throw rejected(`stream '${s.name}' does not exist (stream.create is false, so it must)`, err)
      if (!covers(s.subjects, config.subject)) throw rejected(`stream.subjects ${JSON.stringify(s.subjects)} do not take the subjects of '${config.subject}'`)
      try {
        await jsm.streams.add({ name: s.name, subjects: s.subjects, duplicate_window: nanos(s.duplicateWindowMs), storage: StorageType.File })
        log?.info({ stream: s.name, subjects: s.subjects }, 'nats stream created')
        return
      } catch (addErr) {
        throw classifySetup(addErr, `stream '${s.name}' cannot be created`)
      }
    }
    if (!covers(subjects, config.subject)) {
      throw rejected(`stream '${s.name}' exists with subjects ${JSON.stringify(subjects)}, which do not take '${fixedStart(config.subject) || '(any)'}.>' of the subject template '${config.subject}'`)
    }
  }

  function classifySetup(err: unknown, what: string): OutpostError {
    if (isOutpostError(err)) return err
    const chain = causes(err)
    const code = chain.map(jsApiCode).find((c) => c !== undefined)
    if (code !== undefined && SETUP_REFUSED[code]) return rejected(`${what}: ${SETUP_REFUSED[code]} (${errorMessage(err)})`, err)
    const permission = chain.find((e) => e instanceof Error && e.name === 'PermissionViolationError')
    if (permission) return rejected(`${what}: permission denied: ${errorMessage(permission)}`, err)
    if (chain.some((e) => e instanceof Error && (e.name === 'JetStreamNotEnabled' || e.name === 'NoRespondersError'))) {
      return rejected(`${what}: JetStream is not enabled on the server (no responders)`, err)
    }
    return unavailable(`${what}: ${errorMessage(err)}`, err)
  }

  return {
    name,
    type: 'nats',

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
        const entry: Entry = { resolve, reject, done: false, token: '', message, sentAt: 0 }
        try {
          publish(session, entry, message)
        } catch (err) {
          settle(session, entry, unavailable(`publish failed: ${errorMessage(err)}`, err))
        }
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
      const { nc } = session
      for (const entry of [...session.inFlight.values()]) settle(session, entry, unavailable('closed by the gateway'))
      let timer: NodeJS.Timeout | undefined
      await Promise.race([nc.drain().catch(() => {}), new Promise<void>((r) => (timer = setTimeout(r, CLOSE_GRACE_MS)))])
      clearTimeout(timer)
      lose(session, new Error('target closed by the gateway'))
      await nc.closed()
    },
  }
}

const utf8 = new TextDecoder()
const textOf = (data: Uint8Array): string => utf8.decode(data)

/** The error and its causes, outermost first. */
function causes(err: unknown): unknown[] {
  const out: unknown[] = []
  for (let e: unknown = err; e !== undefined && e !== null && out.length < 8; e = (e as { cause?: unknown }).cause) out.push(e)
  return out
}

/** The JetStream API error code (`err_code`) of a JetStreamApiError, if it is one. */
function jsApiCode(err: unknown): number | undefined {
  if (!(err instanceof Error) || err.name !== 'JetStreamApiError' && !/ApiError|NotFound/.test(err.name)) return undefined
  const code = (err as { code?: unknown }).code
  return typeof code === 'number' ? code : undefined
}

/** The literal tokens of a subject template before its first `{placeholder}`, joined by dots. */
export function fixedStart(template: string): string {
  const tokens = template.split('.')
  const i = tokens.findIndex((t) => t.includes('{'))
  return (i < 0 ? tokens : tokens.slice(0, i)).join('.')
}

/**
 * Whether some stream subject takes every subject the template can make: the template's fixed
 * start followed by anything (placeholders may hold dots), or exactly the template when it has none.
 */
export function covers(streamSubjects: readonly string[], template: string): boolean {
  const literal = !template.includes('{')
  const fixed = fixedStart(template)
  const want = fixed === '' ? [] : fixed.split('.')
  return streamSubjects.some((s) => {
    const have = s.split('.')
    for (let i = 0; i < have.length; i++) {
      if (have[i] === '>') return literal ? i < want.length : i <= want.length
      if (i >= want.length) return false
      if (have[i] !== '*' && have[i] !== want[i]) return false
    }
    return literal && have.length === want.length
  })
}
