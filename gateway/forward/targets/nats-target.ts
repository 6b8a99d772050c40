// The NATS JetStream cloud target: publishes each forwarded event to a stream and settles the
// send on the server's PubAck. Ordering, retries, backoff and dead letters belong to the pump (see
// target.ts); this file only speaks NATS and turns what the server and nats.js report into
// TARGET_UNAVAILABLE (try again later) or TARGET_REJECTED (never going to work as configured / for
// this message).
import { jetstream, jetstreamManager, StorageType, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream'
import { connect, headers as natsHeaders, nanos, type NatsConnection } from '@nats-io/transport-node'
import type { Logger } from 'pino'
import { errorMessage, isOutpostError, type OutpostError } from '../../../runtime/errors.js'
import type { NatsTargetConfig } from '../forward-config.js'
import { targetRejected, targetUnavailable, type ForwardMessage, type ForwardTarget, type SendResult } from '../target.js'

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
}

/** One connection; a new one is made by every successful connect(). */
interface Session {
  readonly nc: NatsConnection
  readonly js: JetStreamClient
  ended: boolean
  closedByUs: boolean
  readonly inFlight: Set<Entry>
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
    session.inFlight.delete(entry)
    if (isOutpostError(result)) entry.reject(result)
    else entry.resolve(result)
  }

  /** The session is gone (link cut, server closed it, confirm timeout, close()): fail what it holds, tell the pump. */
  function lose(session: Session, cause: unknown): void {
    if (session.ended) return
    session.ended = true
    if (current === session) current = undefined
    const down = session.closedByUs ? unavailable('closed by the gateway', cause) : unavailable(`connection lost: ${errorMessage(cause)}`, cause)
    for (const entry of [...session.inFlight]) settle(session, entry, down)
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

  /** Sorts a failed publish into "never for this message" and "try again later". */
  function classifySend(session: Session, message: ForwardMessage, err: unknown): OutpostError {
    const chain = causes(err)
    const apiCode = chain.map(jsApiCode).find((c) => c !== undefined)
    if (apiCode !== undefined && MESSAGE_REFUSED[apiCode]) return rejected(`message ${message.id}: ${MESSAGE_REFUSED[apiCode]} (${errorMessage(err)})`, err)
    for (const e of chain) {
      const kind = e instanceof Error ? e.name : ''
      const text = errorMessage(e)
      if (/max_payload/.test(text)) return rejected(`message ${message.id} (${message.body.byteLength}-byte body with headers) exceeds the server's max_payload`, err)
      if (kind === 'InvalidSubjectError') return rejected(`message ${message.id}: invalid subject '${message.subject}'`, err)
      if (kind === 'PermissionViolationError') return rejected(`message ${message.id}: publishing to '${message.subject}' is not permitted: ${text}`, err)
      if (kind === 'TimeoutError') {
        // The link is taken for lost: the pump reconnects and sends again.
        const down = unavailable(`no PubAck for message ${message.id} within ${config.confirmTimeoutMs} ms`, err)
        lose(session, down)
        return down
      }
      if (kind === 'NoRespondersError' || kind === 'JetStreamNotEnabled') return unavailable(`no stream answers on '${message.subject}' right now`, err)
    }
    return unavailable(`publish failed: ${errorMessage(err)}`, err)
  }

  function publish(session: Session, entry: Entry, message: ForwardMessage): void {
    const problem = subjectProblem(message.subject)
    if (problem) return settle(session, entry, rejected(`message ${message.id}: invalid subject '${message.subject}': ${problem}`))
    let hdrs
    try {
      hdrs = natsHeaders()
      for (const [k, v] of Object.entries(message.headers)) hdrs.set(k, v)
      hdrs.set('Content-Type', message.contentType)
    } catch (err) {
      return settle(session, entry, rejected(`message ${message.id} has a header NATS cannot carry: ${errorMessage(err)}`, err))
    }
    session.inFlight.add(entry)
    // js.publish writes to the connection synchronously (before its first await), so calls go out in order.
    session.js
      .publish(message.subject, message.body, { msgID: message.id, headers: hdrs, timeout: config.confirmTimeoutMs })
      .then(
        (ack) => settle(session, entry, { duplicate: ack.duplicate === true }),
        (err: unknown) => {
          if (!entry.done) settle(session, entry, session.ended ? unavailable(`connection lost: ${errorMessage(err)}`, err) : classifySend(session, message, err))
        },
      )
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
        ...(config.user !== undefined ? { user: config.user } : {}),
        ...(config.pass !== undefined ? { pass: config.pass } : {}),
        ...(config.token !== undefined ? { token: config.token } : {}),
      })
    } catch (err) {
      const kind = err instanceof Error ? err.name : ''
      if (kind === 'AuthorizationError' || kind === 'UserAuthenticationExpiredError') throw rejected(`the server refused the credentials: ${errorMessage(err)}`, err)
      throw unavailable(`cannot connect to ${config.servers.join(', ')}: ${errorMessage(err)}`, err)
    }
    const session: Session = { nc, js: jetstream(nc, { timeout: config.confirmTimeoutMs }), ended: false, closedByUs: false, inFlight: new Set() }
    void nc.closed().then((err) => lose(session, err ?? new Error('connection closed by the server')))
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
    log?.info({ servers: config.servers, stream: config.stream.name }, 'nats target connected')
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
        const entry: Entry = { resolve, reject, done: false }
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
      for (const entry of [...session.inFlight]) settle(session, entry, unavailable('closed by the gateway'))
      let timer: NodeJS.Timeout | undefined
      await Promise.race([nc.drain().catch(() => {}), new Promise<void>((r) => (timer = setTimeout(r, CLOSE_GRACE_MS)))])
      clearTimeout(timer)
      lose(session, new Error('target closed by the gateway'))
      await nc.closed()
    },
  }
}

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

/** Why a subject cannot be published to (empty token, wildcard, whitespace), or undefined. */
function subjectProblem(subject: string): string | undefined {
  if (subject === '') return 'it is empty'
  if (/\s/.test(subject)) return 'it contains whitespace'
  const tokens = subject.split('.')
  if (tokens.some((t) => t === '')) return 'it has an empty token'
  if (tokens.some((t) => t === '*' || t === '>')) return 'it has a wildcard'
  return undefined
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
