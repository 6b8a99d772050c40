import { createHash, timingSafeEqual } from 'node:crypto'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import net from 'node:net'
import { Hono, type Context } from 'hono'
import type { Logger } from 'pino'
import { collectDefaultMetrics, Counter, Gauge, Registry as MetricsRegistry } from 'prom-client'
import { ErrorCode, errorMessage, OutpostError } from '../../runtime/errors.js'
import type { AuthStats } from '../auth/broker-auth.js'
import type { BrokerStats, MqttBroker } from '../broker/mqtt-broker.js'
import type { RetainedStats } from '../persistence/retained-limit.js'
import type { SessionQueueStats } from '../persistence/sqlite-persistence.js'
import type { Registry } from '../registry/registry.js'
import { MESSAGE_KINDS, type Traffic } from './traffic.js'
import type { ForwarderStats } from '../forward/forwarder.js'
import { forwardMetrics } from './forward-metrics.js'
import type { CommandRouter } from '../commands/command-router.js'
import type { CommandFrontEndStats } from '../commands/command-request.js'
import { commandRoutes } from './command-routes.js'
import { createApiServer } from './client-errors.js'
import { quoted, shown } from '../commands/shown.js'

/** What the HTTP face reads of a running gateway. */
export interface GatewayView {
  /** The broker now running (a new one after a drill), or undefined while it is down. */
  broker(): MqttBroker | undefined
  /** Whether the gateway database takes writes now. */
  databaseWritable(): boolean
  registry: Registry
  auth(): AuthStats
  /** Queues of the broker's clients (with broker.db; undefined with an in-memory broker state). */
  sessions?(): SessionQueueStats | undefined
  /** The broker's retained messages and how many were not kept (mqtt.retainedMaxTopics, mqtt.retainedMaxBytes). */
  retained?(): RetainedStats
  /** Store-and-forward to cloud targets (undefined when none is configured). */
  forward?(): ForwarderStats | undefined
  /** The cloud command front ends running (`nats`, `rabbitmq`) and their counts. */
  cloudCommands?(): Iterable<[string, CommandFrontEndStats]>
  /** Device commands over HTTP, when on: the router and what HTTP callers may call. */
  commands?: { router: CommandRouter; allow: readonly string[] }
}

export interface HttpServer {
  readonly url: string
  readonly port: number
  /** The metrics /metrics serves (a registry of its own, not prom-client's global one). */
  readonly metrics: MetricsRegistry
  /** Stops accepting, closes idle keep-alive connections at once and busy ones after a grace; idempotent. */
  close(): Promise<void>
}

export interface HttpServerOptions {
  host: string
  port: number
  /** Bearer token for every route but /healthz, when set. */
  token?: string
  view: GatewayView
  log: Logger
  /** Messages through the broker (gateway.ts feeds it from each broker it starts); without it /metrics has no message counts. */
  traffic?: Traffic
  /** How long close() lets a request in progress finish before cutting its connection, ms (default 1 000). */
  closeGraceMs?: number
  /** Most HTTP connections open at once (default 256); past it a new one takes the place of the oldest not being answered. */
  maxConnections?: number
}

/** The error body of every refusal: the shape replies carry on the wire. */
const failure = (c: Context, status: 401 | 404 | 405 | 500, code: string, message: string, headers?: Record<string, string>): Response =>
  c.json({ error: { code, message } }, status, headers)

const digest = (s: string): Buffer => createHash('sha256').update(s).digest()

/** A route's path (`/devices/:id/contract`) as a pattern a request path is tested against. */
const routePattern = (route: string): RegExp => new RegExp(`^${route.split('/').map((level) => (level.startsWith(':') ? '[^/]+' : level.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))).join('/')}$`)

/** Compares a presented bearer token with the configured one in constant time (both hashed first: equal lengths). */
function tokenMatches(header: string | undefined, expected: Buffer): boolean | undefined {
  if (header === undefined) return undefined
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header)
  if (m === null) return undefined
  return timingSafeEqual(digest(m[1]!), expected)
}

/** Longest request path written into a 404 message (a client chooses it). */
const MAX_ECHOED_PATH = 200

/** Registers a gauge read at each scrape: one number, or one per label set. */
export type GaugeOf = <L extends string>(name: string, help: string, read: () => number | Iterable<[Partial<Record<L, string>>, number]>, labelNames?: readonly L[]) => void
/** Registers a counter that follows counts kept elsewhere, per label set. */
export type FollowOf = <L extends string>(name: string, help: string, labelNames: readonly L[], read: () => Iterable<[Partial<Record<L, string>>, number]>) => void

/**
 * Builds the metrics of a gateway on a registry of its own: process metrics (prom-client's
 * defaults), the fleet, the broker, and the counts the gateway keeps (traffic, auth, presence)
 * read at each scrape.
 */
function gatewayMetrics(view: GatewayView, traffic: Traffic | undefined): MetricsRegistry {
  const registers = [new MetricsRegistry()]
  const register = registers[0]!
  collectDefaultMetrics({ register })

  /** A gauge read at each scrape (per label set when it has labels). */
  const gauge: GaugeOf = <L extends string>(name: string, help: string, read: () => number | Iterable<[Partial<Record<L, string>>, number]>, labelNames: readonly L[] = []): void =>
    void new Gauge({
      name,
      help,
      labelNames,
      registers,
      collect() {
        const value = read()
        if (typeof value === 'number') return void this.set(value)
        this.reset()
        for (const [labels, n] of value) this.set(labels, n)
      },
    })
  /**
   * A counter that follows a count kept elsewhere, per label set. A count that went down was
   * started again (a new broker after a drill): what it holds now is new.
   */
  const follow: FollowOf = <L extends string>(name: string, help: string, labelNames: readonly L[], read: () => Iterable<[Partial<Record<L, string>>, number]>): void => {
    const last = new Map<string, number>()
    new Counter({
      name,
      help,
      labelNames,
      registers,
      collect() {
        for (const [labels, value] of read()) {
          const key = JSON.stringify(labels)
          const before = last.get(key) ?? 0
          this.inc(labels, value >= before ? value - before : value)
          last.set(key, value)
        }
      },
    })
  }
  const brokerStats = (): BrokerStats | undefined => view.broker()?.stats()
  const byReason = (counts: Record<string, number>): [Record<'reason', string>, number][] => Object.entries(counts).map(([reason, n]) => [{ reason }, n])

  gauge('outpost_gateway_devices_online', 'Devices whose presence says online.', () => view.registry.online())
  gauge('outpost_gateway_devices_known', 'Devices in the fleet registry, online or not.', () => view.registry.size())
  gauge('outpost_gateway_broker_up', '1 while the MQTT broker listens, 0 while it is down (a drill).', () => (view.broker() === undefined ? 0 : 1))
  gauge('outpost_gateway_clients_connected', 'Connections open on the broker, over all its listeners.', () => brokerStats()?.connections ?? 0)
  gauge('outpost_gateway_broker_in_flight', 'Messages the broker is delivering right now.', () => brokerStats()?.inFlight ?? 0)
  follow('outpost_gateway_broker_refused_connections_total', 'Connections closed at accept: the connection limit was reached.', [], () => [[{}, brokerStats()?.refusedConnections ?? 0]])
  follow('outpost_gateway_broker_evicted_connections_total', 'Connections that had not logged in, closed at the connection limit to make room for a new one.', [], () => [[{}, brokerStats()?.evictedConnections ?? 0]])
  follow('outpost_gateway_broker_oversized_packets_total', 'Connections closed for a packet over the size limit.', [], () => [[{}, brokerStats()?.oversizedPackets ?? 0]])
  follow('outpost_gateway_broker_dropped_qos0_total', 'QoS 0 messages not sent to a client that did not read fast enough.', [], () => [[{}, brokerStats()?.droppedQos0 ?? 0]])
  gauge('outpost_gateway_session_queued_messages', 'QoS 1/2 messages queued for clients (in flight, or for persistent sessions that are away).', () => view.sessions?.()?.queued ?? 0)
  gauge('outpost_gateway_session_queued_bytes', 'Payload and topic bytes of those messages.', () => view.sessions?.()?.queuedBytes ?? 0)
  gauge('outpost_gateway_retained_messages', 'Topics holding a retained message.', () => view.retained?.().topics ?? 0)
  gauge('outpost_gateway_retained_bytes', 'Payload and topic bytes of retained messages.', () => view.retained?.().bytes ?? 0)
  follow('outpost_gateway_retained_refused_total', 'Retained messages not kept, the store being at mqtt.retainedMaxTopics or mqtt.retainedMaxBytes (delivered to the subscribers of the moment only).', [], () => [[{}, view.retained?.().refused ?? 0]])
  follow('outpost_gateway_session_dropped_total', 'Messages not queued for a client whose queue was full (mqtt.sessionMaxMessages, mqtt.sessionMaxBytes).', [], () => [[{}, view.sessions?.()?.dropped ?? 0]])
  gauge('outpost_gateway_broker_held_for_order', 'Messages held back until those published before them are delivered.', () => brokerStats()?.heldForOrder ?? 0)
  follow('outpost_gateway_broker_order_waits_given_up_total', 'Messages that stopped waiting for one published before them that never came.', [], () => [[{}, brokerStats()?.orderWaitsGivenUp ?? 0]])
  follow('outpost_gateway_broker_slow_clients_cut_total', 'Clients cut off with too many QoS 1 bytes waiting for them.', [], () => [[{}, brokerStats()?.slowClientsCut ?? 0]])
  if (traffic !== undefined) {
    const sides = (field: 'messages' | 'bytes'): [Record<'direction' | 'kind', string>, number][] => {
      const s = traffic.snapshot()
      return (['in', 'out'] as const).flatMap((direction) => MESSAGE_KINDS.map((kind): [Record<'direction' | 'kind', string>, number] => [{ direction, kind }, s[direction][kind][field]]))
    }
    follow('outpost_gateway_messages_total', 'Messages published to the broker (in) and delivered by it (out), by kind.', ['direction', 'kind'], () => sides('messages'))
    follow('outpost_gateway_message_bytes_total', 'Payload bytes of those messages.', ['direction', 'kind'], () => sides('bytes'))
  }
  follow('outpost_gateway_auth_refused_total', 'Connections refused by authentication, by reason.', ['reason'], () => byReason(view.auth().refused))
  follow('outpost_gateway_denied_total', 'Publishes and subscriptions refused by authorization, by reason.', ['action', 'reason'], () => {
    const a = view.auth()
    return [
      ...Object.entries(a.deniedPublish).map(([reason, n]): [Record<'action' | 'reason', string>, number] => [{ action: 'publish', reason }, n]),
      ...Object.entries(a.deniedSubscribe).map(([reason, n]): [Record<'action' | 'reason', string>, number] => [{ action: 'subscribe', reason }, n]),
    ]
  })
  follow('outpost_gateway_clients_kicked_total', 'Clients disconnected because their device was revoked or its secret rotated.', [], () => [[{}, view.auth().kicked]])
  follow('outpost_gateway_presence_ignored_total', 'Status frames the registry did not record, by reason.', ['reason'], () => byReason(view.registry.stats().ignored))
  follow('outpost_gateway_contracts_recorded_total', 'Contract documents the registry kept (empty frames, which clear one, included).', [], () => [[{}, view.registry.stats().contracts.recorded]])
  follow('outpost_gateway_contracts_ignored_total', 'Contract frames the registry did not keep, by reason (too-large, malformed, kind, sender, payload, unknown).', ['reason'], () => byReason(view.registry.stats().contracts.ignored))
  cloudCommandMetrics(follow, () => [...(view.cloudCommands?.() ?? [])])
  forwardMetrics(gauge, follow, () => view.forward?.())
  return register
}

/** Keys of CommandFrontEndStats.failed that are no error code of a reply: nothing was answered, or the answer was lost. */
const NOT_REPLIED = new Set(['NO_REPLY', 'REPLY_REFUSED', 'REPLY_LOST', 'REDELIVERED'])

/** The cloud command front ends' counts (label `front_end`: nats, rabbitmq), read at each scrape. */
function cloudCommandMetrics(follow: FollowOf, read: () => [string, CommandFrontEndStats][]): void {
  const each = (value: (s: CommandFrontEndStats) => number): [Record<'front_end', string>, number][] => read().map(([frontEnd, s]) => [{ front_end: frontEnd }, value(s)])
  follow('outpost_gateway_cloud_commands_handled_total', "Cloud command requests answered with the device's result.", ['front_end'], () => each((s) => s.handled))
  follow('outpost_gateway_cloud_commands_failed_total', 'Cloud command requests answered with an error, by its code.', ['front_end', 'code'], () =>
    read().flatMap(([frontEnd, s]) => Object.entries(s.failed).filter(([code]) => !NOT_REPLIED.has(code)).map(([code, n]): [Record<'front_end' | 'code', string>, number] => [{ front_end: frontEnd, code }, n])),
  )
  follow('outpost_gateway_cloud_commands_no_reply_total', 'Cloud command requests dropped unanswered: no reply subject (NATS) or replyTo (RabbitMQ) to answer to (NO_REPLY).', ['front_end'], () => each((s) => s.failed.NO_REPLY ?? 0))
  follow('outpost_gateway_cloud_commands_reply_refused_total', 'Cloud command requests dropped unanswered: their reply subject (NATS) or replyTo (RabbitMQ) is outside the configured prefixes (REPLY_REFUSED).', ['front_end'], () => each((s) => s.failed.REPLY_REFUSED ?? 0))
  follow('outpost_gateway_cloud_commands_reply_lost_total', 'Cloud command requests that ran but whose reply could not be sent: the link was lost meanwhile, or the reply was refused (REPLY_LOST).', ['front_end'], () => each((s) => s.failed.REPLY_LOST ?? 0))
  follow('outpost_gateway_cloud_commands_redelivered_total', 'Cloud command requests delivered again after a connection was lost before they were acknowledged; each runs again (RabbitMQ; NATS does not redeliver: 0).', ['front_end'], () => each((s) => s.redelivered ?? 0))
  follow('outpost_gateway_cloud_commands_redelivery_dropped_total', 'Cloud command requests dropped after 5 deliveries, each ended by a lost connection (REDELIVERED).', ['front_end'], () => each((s) => s.failed.REDELIVERED ?? 0))
}

/** Connections while every one has a command call in progress: the calls a gateway holds at most (commands.maxPending by default) and some. */
const MAX_ANSWERED_CONNECTIONS = 4_096 + 256
/** Requests one connection may have waiting for their answers at once (pipelined); beyond, it is closed. */
const MAX_PIPELINED = 32
/** How long a new connection (or one that just sent a request) is not taken to make room, ms. */
const FRESH_MS = 2_000

/** The connections of an HTTP server held to a limit (see createRoom). */
export interface Room {
  /** Marks a command call in progress on `socket` (it is not taken to make room meanwhile); the function ends it. */
  hold(socket: net.Socket | undefined): () => void
  /** Starts holding `server` to the limit. */
  attach(server: Server): void
}

/**
 * Holds a server to `limit` connections (Node's own limit closed every one over it at accept: 256
 * sockets sending a header a byte at a time kept /healthz from every probe). Past `limit`, the
 * oldest with no command call in progress and nothing from its client for FRESH_MS (headers not
 * sent, idle, or answers not read) is closed; those with a command call (held for an offline
 * device, say) take no place. Fresh ones are let be, up to `answeredLimit` in all (then the oldest
 * without a command call goes): a burst of 300 callers with the token lost 44 whose requests were
 * sent but not read yet. Only a command call protects: a client without the token took 4,352
 * connections with pipelined probes it never read, and the memory with them. A connection with
 * more than MAX_PIPELINED requests waiting for their answers is closed.
 */
export function createRoom(limit: number, answeredLimit: number = MAX_ANSWERED_CONNECTIONS): Room {
  const open = new Set<net.Socket>() // the oldest first
  // Command calls in progress per socket, and the open sockets with one.
  const calls = new WeakMap<net.Socket, number>()
  let busy = 0
  const setCalls = (socket: net.Socket, n: number): void => {
    const before = calls.get(socket) ?? 0
    calls.set(socket, n)
    if (!open.has(socket)) return
    if (before === 0 && n > 0) busy++
    else if (before > 0 && n === 0) busy--
  }
  // When each socket was accepted or last sent a request.
  const heard = new WeakMap<net.Socket, number>()
  /** Closes the oldest open socket with no command call heard from before `before`; whether there was one. */
  const evict = (before: number): boolean => {
    for (const s of open) {
      if ((calls.get(s) ?? 0) > 0 || (heard.get(s) ?? 0) >= before) continue
      open.delete(s)
      s.destroy()
      return true
    }
    return false
  }
  // Requests whose answers are not written yet, per socket.
  const waiting = new WeakMap<net.Socket, number>()
  return {
    hold(socket) {
      if (socket === undefined) return () => {}
      setCalls(socket, (calls.get(socket) ?? 0) + 1)
      let done = false
      return () => {
        if (done) return
        done = true
        setCalls(socket, Math.max(0, (calls.get(socket) ?? 1) - 1))
      }
    },
    attach(server) {
      /** Closes the oldest without a command call and not fresh while `room` or more are open besides those with one. */
      const trim = (room: number): void => {
        const before = performance.now() - FRESH_MS
        while (open.size - busy >= room && evict(before));
      }
      // Fresh ones past the limit are closed once they are no longer fresh, new connections or not.
      const sweep = setInterval(() => trim(limit + 1), FRESH_MS / 2).unref()
      server.once('close', () => clearInterval(sweep))
      server.on('connection', (socket: net.Socket) => {
        const now = performance.now()
        trim(limit)
        // Every other one has a command call in progress (with the token), or is fresh too.
        if (open.size >= answeredLimit && !evict(Infinity)) return void socket.destroy()
        open.add(socket)
        heard.set(socket, now)
        socket.once('close', () => {
          if (open.delete(socket) && (calls.get(socket) ?? 0) > 0) busy--
        })
      })
      server.on('request', (req: IncomingMessage, res: ServerResponse) => {
        const socket = req.socket
        heard.set(socket, performance.now())
        const n = (waiting.get(socket) ?? 0) + 1
        waiting.set(socket, n)
        res.once('close', () => waiting.set(socket, Math.max(0, (waiting.get(socket) ?? 1) - 1)))
        if (n > MAX_PIPELINED) socket.destroy()
      })
    },
  }
}

/**
 * Starts the gateway's HTTP face (Hono on Node): `/healthz` (the process runs), `/readyz` (the
 * broker listens and the gateway database takes writes), `/metrics` (Prometheus text),
 * `/devices` and `/devices/:id` (the fleet registry). With a token, every route but /healthz
 * asks for it as a bearer token.
 * @throws PORT_IN_USE when the port is taken, INVALID_CONFIG when it cannot listen otherwise.
 */
export async function startHttpServer(opts: HttpServerOptions): Promise<HttpServer> {
  const { view, log } = opts
  const metrics = gatewayMetrics(view, opts.traffic)
  const expected = opts.token === undefined ? undefined : digest(opts.token)
  const app = new Hono()

  // Liveness asks for nothing: whoever can reach the port may know the process runs.
  app.get('/healthz', (c) => c.json({ status: 'ok' }))
  app.use('*', async (c, next) => {
    if (expected === undefined) return next()
    const ok = tokenMatches(c.req.header('authorization'), expected)
    if (ok === true) return next()
    // RFC 6750 §3: a request with no token gets the scheme only; a wrong one, why.
    const challenge = ok === undefined ? 'Bearer realm="outpost-gateway"' : 'Bearer realm="outpost-gateway", error="invalid_token"'
    return failure(c, 401, ErrorCode.NOT_AUTHENTICATED, ok === undefined ? 'a bearer token is required' : 'the bearer token is not the one configured', { 'WWW-Authenticate': challenge })
  })
  app.get('/readyz', (c) => {
    const checks = { broker: view.broker() !== undefined, database: view.databaseWritable() }
    const notReady = Object.entries(checks).filter(([, ok]) => !ok).map(([name]) => name)
    return c.json({ ready: notReady.length === 0, checks, notReady }, notReady.length === 0 ? 200 : 503)
  })
  app.get('/metrics', async (c) => c.body(await metrics.metrics(), 200, { 'Content-Type': metrics.contentType }))
  const room = createRoom(opts.maxConnections ?? 256)
  if (view.commands !== undefined) commandRoutes(app, view.commands, room.hold)
  app.get('/forward', (c) => c.json(view.forward?.() ?? { targets: {}, dropped: {} }))
  app.get('/devices', (c) => c.json({ devices: view.registry.list() }))
  app.get('/devices/:id', (c) => {
    const id = c.req.param('id')
    const entry = view.registry.get(id)
    return entry === undefined ? failure(c, 404, ErrorCode.NOT_FOUND, `no device ${quoted(id, MAX_ECHOED_PATH)} in the registry`) : c.json(entry)
  })
  // The contract document the device announced; `current`: announced by the process online now (or last).
  app.get('/devices/:id/contract', (c) => {
    const id = c.req.param('id')
    const entry = view.registry.get(id)
    const contract = entry === undefined ? undefined : view.registry.contract(id)
    if (contract === undefined) return failure(c, 404, ErrorCode.NOT_FOUND, `no contract document of device ${quoted(id, MAX_ECHOED_PATH)} in the registry`)
    return c.json({ device: id, instance: contract.instance, current: contract.instance === entry!.instance, receivedAt: contract.receivedAt, bytes: contract.bytes, document: contract.document })
  })
  app.notFound((c) => {
    const path = c.req.path
    // A route that is there for other methods: 405 with what it takes (DELETE /devices/x was a 404).
    const allow = [...new Set(app.routes.filter((r) => r.method !== 'ALL' && routePattern(r.path).test(path)).map((r) => r.method))]
    if (allow.length > 0) return failure(c, 405, ErrorCode.BAD_ARGUMENT, `${shown(c.req.method, 16)} is not taken on ${shown(path, MAX_ECHOED_PATH)}; expected ${allow.join(' or ')}`, { Allow: allow.join(', ') })
    return failure(c, 404, ErrorCode.NOT_FOUND, `no route ${shown(c.req.method, 16)} ${shown(path, MAX_ECHOED_PATH)}`)
  })
  app.onError((err, c) => {
    log.warn({ err: errorMessage(err), path: c.req.path.slice(0, MAX_ECHOED_PATH) }, 'HTTP request failed')
    return failure(c, 500, ErrorCode.INTERNAL, 'internal error')
  })

  // Leaves the process's Request and Response alone (the gateway's libraries may use them).
  // A client that sends its headers a byte at a time (slowloris) holds a socket until the headers
  // timeout; thousands of them took every file descriptor the process had, and devices could no
  // longer connect to the broker. Probes and scrapers need a few connections: past
  // `maxConnections`, a new one takes the place of the oldest that is not being answered (see
  // createRoom), and a request must have its headers in 10 s (checked every 5 s).
  // Requests the routes never see are answered in their error shape (client-errors.ts).
  const server = createApiServer(app.fetch, { headersTimeout: 10_000, requestTimeout: 30_000, connectionsCheckingInterval: 5_000 }, log)
  room.attach(server)
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject)
      resolve()
    })
  }).catch((err: unknown) => {
    const { host, port } = opts
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw new OutpostError(ErrorCode.PORT_IN_USE, `HTTP port ${host}:${port} is already in use; choose another with http.port in the config file or OUTPOST_HTTP_PORT (0: a free one)`, {
        cause: err,
        details: { host, port, listener: 'http' },
      })
    }
    throw new OutpostError(ErrorCode.INVALID_CONFIG, `cannot listen for HTTP on ${host}:${port}: ${errorMessage(err)}`, { cause: err, details: { host, port, listener: 'http' } })
  })
  server.on('error', (err) => log.warn({ err: errorMessage(err) }, 'HTTP server error'))
  const port = (server.address() as net.AddressInfo).port
  const url = `http://${net.isIPv6(opts.host) ? `[${opts.host}]` : opts.host}:${port}`
  let closing: Promise<void> | undefined
  return {
    url,
    port,
    metrics,
    close() {
      closing ??= new Promise<void>((resolve) => {
        const cut = setTimeout(() => server.closeAllConnections(), opts.closeGraceMs ?? 1_000)
        cut.unref()
        server.close(() => {
          clearTimeout(cut)
          resolve()
        })
        server.closeIdleConnections()
      })
      return closing
    },
  }
}
