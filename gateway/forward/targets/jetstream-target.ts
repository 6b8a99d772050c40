// The NATS JetStream target: the official client (@nats-io/transport-node, @nats-io/jetstream),
// one connection whose own reconnect is off (the forward pump reconnects, with backoff, and sends
// again from the oldest unconfirmed message), the stream created or bound at connect, and each
// event published with its envelope id as Nats-Msg-Id so a re-sent event is stored once.
import { jetstreamManager, jetstream, JetStreamApiError, StorageType, type JetStreamClient } from '@nats-io/jetstream'
import { headers as natsHeaders, type NatsConnection } from '@nats-io/nats-core'
import { connect } from '@nats-io/transport-node'
import type { Logger } from 'pino'
import { errorMessage, isOutpostError } from '../../../runtime/errors.js'
import type { NatsTargetConfig } from '../forward-config.js'
import { targetRejected, targetUnavailable, type ForwardMessage, type ForwardTarget, type SendResult } from '../target.js'

/** JetStream API error codes that a message will meet again however often it is sent. */
const PERMANENT_API_CODES = new Set([
  10_054, // maximum message size exceeded
  10_077, // message size exceeds maximum allowed
])

/** A failure of one publish: TARGET_REJECTED when sending it again cannot help. */
function classify(name: string, err: unknown): Error {
  const why = errorMessage(err)
  if (err instanceof JetStreamApiError && PERMANENT_API_CODES.has(err.code)) return targetRejected(name, `JetStream refused the message: ${why}`, err)
  // The client refuses these before sending: a subject NATS does not take, a payload over the server's max_payload.
  if (/invalid subject|max_payload|maximum payload|payload.*(too large|exceed)|message size exceeds/i.test(why)) return targetRejected(name, why, err)
  return targetUnavailable(name, why, err)
}

const nanos = (ms: number): number => ms * 1_000_000

/** The fixed start of a subject template: what a stream must take for it (`a.b.{device}` → `a.b.>`). */
function subjectRoot(template: string): string {
  const tokens = template.split('.')
  const cut = tokens.findIndex((t) => t.includes('{'))
  return cut === -1 ? template : [...tokens.slice(0, cut), '>'].join('.')
}

/** True when a stream subject filter takes every subject under `root` (`x.>`), NATS wildcard rules. */
function covers(filter: string, root: string): boolean {
  const f = filter.split('.')
  const r = root.split('.')
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '>') return true
    if (i >= r.length) return false
    if (f[i] !== '*' && f[i] !== r[i]) return false
    if (f[i] === '*' && r[i] === '>') return false
  }
  return f.length === r.length
}

/** Creates the JetStream target of one configured name. */
export function createJetStreamTarget(name: string, config: NatsTargetConfig, opts: { logger?: Logger } = {}): ForwardTarget {
  let nc: NatsConnection | undefined
  let js: JetStreamClient | undefined
  let closing = false
  const listeners = new Set<(err: Error) => void>()
  /** The connection whose loss was reported already (each is reported once). */
  let reported: NatsConnection | undefined

  const watch = (conn: NatsConnection): void => {
    void conn.closed().then((err) => {
      if (closing || conn !== nc || reported === conn) return
      reported = conn
      const why = targetUnavailable(name, `connection to ${config.servers.join(', ')} lost${err instanceof Error ? `: ${err.message}` : ''}`, err)
      for (const l of [...listeners]) l(why)
    })
  }

  const ensureStream = async (conn: NatsConnection): Promise<void> => {
    const jsm = await jetstreamManager(conn, { timeout: config.confirmTimeoutMs })
    const root = subjectRoot(config.subject)
    let info
    try {
      info = await jsm.streams.info(config.stream.name)
    } catch (err) {
      if (!(err instanceof JetStreamApiError) || err.code !== 10_059) throw err
    }
    if (info === undefined) {
      if (!config.stream.create) throw targetRejected(name, `stream ${config.stream.name} does not exist (stream.create is false)`)
      try {
        await jsm.streams.add({ name: config.stream.name, subjects: config.stream.subjects, duplicate_window: nanos(config.stream.duplicateWindowMs), storage: StorageType.File })
      } catch (err) {
        // Subjects another stream has, a name taken meanwhile, limits of the account: not a passing fault.
        if (err instanceof JetStreamApiError) throw targetRejected(name, `cannot create stream ${config.stream.name}: ${err.message}`, err)
        throw err
      }
      return
    }
    const subjects = info.config.subjects ?? []
    if (!subjects.some((s) => covers(s, root))) {
      throw targetRejected(name, `stream ${config.stream.name} takes ${subjects.join(', ') || 'no subjects'}, not ${root} (the subject template ${config.subject})`)
    }
  }

  return {
    name,
    type: 'nats',
    async connect() {
      closing = false
      let conn: NatsConnection
      try {
        conn = await connect({
          servers: config.servers,
          name: `outpost-gateway:${name}`,
          reconnect: false,
          timeout: Math.min(config.confirmTimeoutMs, 10_000),
          ...(config.user === undefined ? {} : { user: config.user }),
          ...(config.pass === undefined ? {} : { pass: config.pass }),
          ...(config.token === undefined ? {} : { token: config.token }),
        })
      } catch (err) {
        const why = errorMessage(err)
        // Wrong credentials will not become right by waiting; the pump still tries again, slowly.
        if (/authorization|authentication/i.test(why)) throw targetRejected(name, `NATS refused the login: ${why}`, err)
        throw targetUnavailable(name, `cannot connect to ${config.servers.join(', ')}: ${why}`, err)
      }
      try {
        await ensureStream(conn)
      } catch (err) {
        await conn.close().catch(() => {})
        if (isOutpostError(err)) throw err
        if (/not enabled|no responders/i.test(errorMessage(err))) throw targetRejected(name, `JetStream is not enabled on ${config.servers.join(', ')}`, err)
        throw targetUnavailable(name, `stream setup: ${errorMessage(err)}`, err)
      }
      nc = conn
      js = jetstream(conn, { timeout: config.confirmTimeoutMs })
      watch(conn)
      opts.logger?.debug({ target: name, stream: config.stream.name }, 'JetStream target connected')
    },
    send(m: ForwardMessage): Promise<SendResult> {
      const client = js
      if (client === undefined || nc === undefined || nc.isClosed()) return Promise.reject(targetUnavailable(name, 'not connected'))
      const h = natsHeaders()
      for (const [k, val] of Object.entries(m.headers)) h.set(k, val)
      h.set('Content-Type', m.contentType)
      try {
        return client.publish(m.subject, m.body, { msgID: m.id, headers: h, timeout: config.confirmTimeoutMs }).then(
          (ack) => ({ duplicate: ack.duplicate }),
          (err: unknown) => Promise.reject(classify(name, err)),
        )
      } catch (err) {
        return Promise.reject(classify(name, err))
      }
    },
    onDown(listener) {
      listeners.add(listener)
      return () => void listeners.delete(listener)
    },
    async close() {
      closing = true
      const conn = nc
      nc = undefined
      js = undefined
      if (conn !== undefined && !conn.isClosed()) await conn.close().catch(() => {})
    },
  }
}
