import { createHash, timingSafeEqual } from 'node:crypto'
import type { Aedes, AedesOptions, Client, PublishPacket, Subscription } from 'aedes'
import type { Logger } from 'pino'
import { ErrorCode, errorMessage, OutpostError } from '../../runtime/errors.js'
import { createLogLimiter } from '../../runtime/log-limiter.js'
import { createEnvelopeCodec } from '../../runtime/wire/codec.js'
import type { EnvelopeKind, PresencePayload } from '../../runtime/wire/envelope.js'
import { DEFAULT_TOPIC_PREFIX } from '../../runtime/wire/topics.js'
import type { RoleConfig } from '../config/gateway-config.js'
import type { DeviceRecord, DeviceTable } from '../devices/device-table.js'
import { createLoginThrottle, type LoginThrottleOptions, type LoginTurn } from './login-throttle.js'
import { createRevocationWatch } from './revocation-watch.js'
import { describesDevice, deviceFilters, filterWithin, layoutOf, maySubscribe, routedAsTopic, type PublishDenial } from './topic-rules.js'

/** Counters of the broker's gatekeeper (for /metrics). */
export interface AuthStats {
  /** Refused CONNECTs by reason (anonymous, client-id, unknown, wrong-secret, revoked, will, store). */
  refused: Record<string, number>
  /** Refused publishes by reason (namespace, layout, retain, malformed, sender, will). */
  deniedPublish: Record<string, number>
  /** Refused subscriptions by reason (namespace, commands, replies, events, limit). */
  deniedSubscribe: Record<string, number>
  /** Clients disconnected because their device was revoked or its secret rotated. */
  kicked: number
}

/** The aedes hooks that authenticate devices and confine them to their namespace. */
export interface BrokerAuth {
  hooks: Pick<AedesOptions, 'authenticate' | 'authorizePublish' | 'authorizeSubscribe'>
  /** Follows a started broker: disconnects clients of revoked devices, tracks who is who. */
  attach(aedes: Aedes): void
  stats(): AuthStats
  close(): void
}

export interface BrokerAuthOptions {
  devices: DeviceTable
  roles: Record<string, RoleConfig>
  log: Logger
  /** The gateway's own clients (its monitor): client id → secret, allowed everything under `ob/`. */
  internal: ReadonlyMap<string, string>
  /** Topic prefix of the wire layout (default `ob`). */
  prefix?: string
  /** How often the device table is asked for revoked and rotated devices, ms (default 500). */
  revokeCheckMs?: number
  /** Told of the devices revoked, rotated or removed (held command calls for them stop waiting). */
  onDevicesChanged?: (ids: string[]) => void
  /** How failed logins from one address slow down (login-throttle.ts). */
  throttle?: LoginThrottleOptions
  /** Shortest time between two log lines about one client's denials or one kind of refused login, ms (default 60 000). */
  logIntervalMs?: number
  /** Most filters one device may hold at once (default 1 000); beyond, a new filter is granted 0x80 (`limit`). */
  maxSubscriptions?: number
}

/** Who a connected client is, decided once at CONNECT. */
interface Identity {
  id: string
  /** One of the gateway's own clients: anything under the prefix. */
  internal: boolean
  /** When its credentials were checked (a secret rotated after that no longer holds). */
  authAt: number
  filters: { own: string[]; events: string[] }
  /** Topics already found to fit the layout, with the kind each carries (levels checked once per distinct topic; bounded). */
  topics: Map<string, EnvelopeKind>
  /** The filters granted on this connection (a restored session's are granted again), less those unsubscribed. */
  subscriptions: Set<string>
}

// CONNACK return codes of MQTT 3.1.1 (aedes' AuthErrorCode is a const enum, which isolated modules cannot read).
const BAD_CREDENTIALS = 4
const NOT_AUTHORIZED = 5
const SERVER_UNAVAILABLE = 3
const IDENTIFIER_REJECTED = 2

const REFUSED: Record<string, string> = {
  anonymous: 'no user name (anonymous clients are not allowed)',
  'client-id': 'the client id is not the device id it logs in as',
  unknown: 'unknown device',
  'wrong-secret': 'wrong secret',
  revoked: 'device revoked',
  will: "the last will is not the device's own retained offline status",
  store: 'the device table cannot be read',
}

const DENIED: Record<PublishDenial, string> = {
  namespace: "outside the client's namespace (ob/<its id>/…)",
  layout: 'not a topic of the wire layout, or an envelope routed otherwise than its topic',
  retain: "retained, but not the client's own status or contract",
  malformed: 'not an envelope (an empty payload only clears a status or a contract)',
  sender: 'the envelope names another sender (src)',
  will: "a last will that is not the device's retained offline status",
}

/** Longest client id and topic written to the log: a client chooses both. */
const MAX_LOGGED = 128
const logged = (s: string | null | undefined): string | undefined => (s == null ? undefined : s.length > MAX_LOGGED ? `${s.slice(0, MAX_LOGGED)}…` : s)
/** Distinct topics remembered per client as fitting the layout; a device publishes a few. */
const MAX_KNOWN_TOPICS = 256

/**
 * Creates the broker's gatekeeper: devices log in with their id (user name and client id) and
 * secret from the device table, publish only under `<prefix>/<their id>/` on the documented
 * layouts with envelopes that name them as sender, and subscribe to their own commands and
 * replies, to presence, and to the events their role allows. Refusals are counted by reason
 * and logged at most once a minute per client (denials) or per reason (logins).
 */
export function createBrokerAuth(opts: BrokerAuthOptions): BrokerAuth {
  const { devices, roles, internal } = opts
  const prefix = opts.prefix ?? DEFAULT_TOPIC_PREFIX
  const log = opts.log.child({ part: 'auth' })
  const stats: AuthStats = { refused: {}, deniedPublish: {}, deniedSubscribe: {}, kicked: 0 }
  // Per reason for logins and kicks; per client for denials (256 clients, the rest share a line).
  const logins = createLogLimiter(log, { intervalMs: opts.logIntervalMs })
  const denials = createLogLimiter(log, { intervalMs: opts.logIntervalMs, maxReasons: 256 })
  const throttle = createLoginThrottle(opts.throttle)
  const maxSubscriptions = opts.maxSubscriptions ?? 1_000
  // The broker's own frame limit bounds what is decoded here; the codec's default would refuse big frames devices may send.
  const codec = createEnvelopeCodec({ maxFrameBytes: Number.MAX_SAFE_INTEGER })
  const identities = new WeakMap<Client, Identity>()
  // Refusals waiting for their delay; answered at once by close().
  const held = new Map<NodeJS.Timeout, () => void>()
  let closed = false
  const watch = createRevocationWatch({
    devices,
    identityOf: (client) => identities.get(client),
    logins,
    changed: opts.onDevicesChanged,
    kicked: (id, why) => {
      stats.kicked++
      logins.info(`kicked ${why}`, { client: logged(id), why }, `device ${why}: connection closed`)
    },
  })

  const internalSecrets = new Map([...internal].map(([id, secret]) => [id, digest(secret)]))

  const roleFilters = (role: string): string[] => {
    const r = roles[role]
    if (r === undefined) {
      logins.warn(`role ${role.slice(0, 64)}`, { role: logged(role) }, 'device has a role the configuration does not define: it may subscribe to its own topics and presence only')
      return []
    }
    return r.subscribe
  }

  // ── authenticate ────────────────────────────────────────────────────────────

  const authenticate: NonNullable<AedesOptions['authenticate']> = (client, username, password, answered) => {
    const address = remoteAddress(client)
    const authAt = Date.now()
    // The turn of this login's secret check (see the throttle), given back with its answer.
    let turn: LoginTurn | undefined
    const done: typeof answered = (err, ok) => {
      turn?.answered()
      answered(err, ok)
    }
    const refuse = (reason: keyof typeof REFUSED, returnCode: number, failure = true): void => {
      stats.refused[reason] = (stats.refused[reason] ?? 0) + 1
      logins.warn(`refused ${reason}`, { client: logged(client.id), username: logged(username), address }, `login refused: ${REFUSED[reason]}`)
      const err = Object.assign(new OutpostError(ErrorCode.NOT_AUTHENTICATED, `login refused: ${REFUSED[reason]}`), { returnCode })
      const answer = (): void => done(err as Parameters<typeof done>[0], false)
      // A store failure is ours, not the client's: not a failure to slow down. Nobody waits for
      // the answer of a connection that closed meanwhile.
      const delayMs = failure ? throttle.failed(address) : 0
      if (delayMs === 0 || closed || client.closed) return answer()
      const t = setTimeout(() => {
        held.delete(t)
        answer()
      }, delayMs)
      t.unref()
      held.set(t, answer)
    }
    if (username === undefined || username === '') return refuse('anonymous', NOT_AUTHORIZED)
    // [MQTT-3.1.3-3] the client id names a session; it must be the device's own, or a device could take another's.
    if (client.id !== username) return refuse('client-id', NOT_AUTHORIZED)
    const admit = (who: Identity): void => {
      if (!willAllowed(who, (client as unknown as { _will?: PublishPacket | null })._will)) return refuse('will', NOT_AUTHORIZED)
      identities.set(client, who)
      done(null, true)
    }
    const own = internalSecrets.get(username)
    if (own !== undefined) {
      if (password === undefined || !timingSafeEqual(digest(password), own)) return refuse('wrong-secret', BAD_CREDENTIALS)
      return admit({ id: username, internal: true, authAt, filters: { own: [], events: [] }, topics: new Map(), subscriptions: new Set() })
    }
    void (async () => {
      turn = await throttle.turn(address)
      // Gone while it waited its turn (a flood's sockets, closed): nothing to check, nobody to answer.
      if (client.closed) return done(Object.assign(new OutpostError(ErrorCode.NOT_AUTHENTICATED, 'login abandoned: the connection closed'), { returnCode: BAD_CREDENTIALS }) as Parameters<typeof done>[0], false)
      let device: DeviceRecord | undefined
      try {
        device = await devices.verify(username, password ?? Buffer.alloc(0))
      } catch (err) {
        log.error({ err: errorMessage(err) }, 'device table unreadable; login refused')
        return refuse('store', SERVER_UNAVAILABLE, false)
      } finally {
        // The hash is done: its shared place goes to the next check, before any refusal's delay.
        turn.checked()
      }
      if (device !== undefined) {
        throttle.succeeded(address)
        return admit({ id: device.id, internal: false, authAt, filters: deviceFilters(prefix, device.id, roleFilters(device.role)), topics: new Map(), subscriptions: new Set() })
      }
      // Why, for the counters only: the client hears the same refusal for all three.
      let reason: 'unknown' | 'revoked' | 'wrong-secret' = 'wrong-secret'
      try {
        const known = devices.get(username)
        reason = known === undefined ? 'unknown' : known.revokedAt !== undefined ? 'revoked' : 'wrong-secret'
      } catch {
        // The refusal stands; only its counter is a guess.
      }
      refuse(reason, BAD_CREDENTIALS)
    })()
  }

  // ── authorizePublish ────────────────────────────────────────────────────────

  /** Why a frame on one of the device's own topics (of `kind`) is refused, if it is; one decode per publish. */
  const checkPayload = (id: string, levels: string[], kind: EnvelopeKind, payload: Buffer, expectOffline: boolean): PublishDenial | undefined => {
    const decoded = codec.decode(payload)
    if (!decoded.ok) return 'malformed'
    const env = decoded.envelope
    if (env.src !== id) return 'sender'
    if (!routedAsTopic(env, kind, levels)) return 'layout'
    if (expectOffline && (env.payload as PresencePayload | undefined)?.online !== false) return 'will'
    return undefined
  }

  /** A will: exactly the device's retained offline presence on its own status topic. */
  const willAllowed = (who: Identity, will: PublishPacket | null | undefined): boolean => {
    if (will == null) return true
    if (who.internal) return will.topic.startsWith(`${prefix}/`)
    if (will.topic !== `${prefix}/${who.id}/status` || will.retain !== true) return false
    return checkPayload(who.id, will.topic.split('/'), 'presence', asBuffer(will.payload), true) === undefined
  }

  /** Why a device's publish is refused, or undefined when it is allowed. */
  const publishDenial = (who: Identity, packet: PublishPacket): PublishDenial | undefined => {
    const topic = packet.topic
    const levels = topic.split('/')
    if (levels[0] !== prefix || levels[1] !== who.id) return 'namespace'
    let kind = who.topics.get(topic)
    if (kind === undefined) {
      kind = layoutOf(levels)
      if (kind === undefined) return 'layout'
      if (who.topics.size >= MAX_KNOWN_TOPICS) who.topics.clear()
      who.topics.set(topic, kind)
    }
    const own = describesDevice(kind)
    if (packet.retain && !own) return 'retain'
    const payload = asBuffer(packet.payload)
    // An empty retained message clears the device's own presence or contract [MQTT-3.3.1-10]; nowhere else is an empty frame anything.
    if (payload.length === 0) return own ? undefined : 'malformed'
    return checkPayload(who.id, levels, kind, payload, false)
  }

  const deny = (who: Identity | undefined, client: Client | null, packet: PublishPacket, reason: PublishDenial): OutpostError => {
    stats.deniedPublish[reason] = (stats.deniedPublish[reason] ?? 0) + 1
    const id = who?.id ?? client?.id ?? undefined
    denials.warn(`client ${logged(id)}`, { client: logged(id), action: 'publish', rule: reason, topic: logged(packet.topic) }, `publish refused: ${DENIED[reason]}; connection closed`)
    return new OutpostError(ErrorCode.NOT_AUTHORIZED, `publish refused: ${DENIED[reason]}`)
  }

  const authorizePublish: NonNullable<AedesOptions['authorizePublish']> = (client, packet, callback) => {
    try {
      const stored = packet as PublishPacket & { clientId?: string; brokerId?: string }
      // A will aedes publishes for a connection that is gone (client is the closing one), or, from
      // its store, for a client of an earlier run (client null, or whoever holds that id now).
      if (client === null || stored.brokerId !== undefined || packet === (client as unknown as { will?: unknown }).will) {
        const id = client !== null && stored.brokerId === undefined ? client.id : stored.clientId
        const who: Identity | undefined =
          client !== null && stored.brokerId === undefined
            ? identities.get(client)
            : id === undefined
              ? undefined
              : { id, internal: internalSecrets.has(id), authAt: 0, filters: { own: [], events: [] }, topics: new Map(), subscriptions: new Set() }
        if (who !== undefined && willAllowed(who, packet)) return callback(null)
        const err = deny(who, client, packet, 'will')
        if (stored.brokerId === undefined) return callback(err)
        // aedes takes a refused stored will for a broker error and keeps it, to try again for
        // ever; dropped instead: sent where nobody may subscribe, not retained, then deleted.
        packet.topic = '$SYS/outpost/refused-will'
        packet.retain = false
        packet.payload = Buffer.alloc(0)
        return callback(null)
      }
      const who = identities.get(client)
      if (who === undefined) return callback(deny(undefined, client, packet, 'namespace'))
      if (who.internal) return packet.topic.startsWith(`${prefix}/`) ? callback(null) : callback(deny(who, client, packet, 'namespace'))
      const reason = publishDenial(who, packet)
      callback(reason === undefined ? null : deny(who, client, packet, reason))
    } catch (err) {
      // A bug here must refuse, not crash the broker.
      log.error({ err: errorMessage(err) }, 'publish check failed; refused')
      callback(new OutpostError(ErrorCode.NOT_AUTHORIZED, 'publish refused: check failed'))
    }
  }

  // ── authorizeSubscribe ──────────────────────────────────────────────────────

  /** Which rule a refused filter broke, for the counters. */
  const subscribeDenial = (filter: string): string => {
    const levels = filter.split('/')
    if (levels[0] !== prefix || levels.length < 3) return 'namespace'
    switch (levels[2]) {
      case 'cmd':
        return 'commands'
      case 'rep':
        return 'replies'
      case 'evt':
        return 'events'
      default:
        return 'namespace'
    }
  }

  const authorizeSubscribe: NonNullable<AedesOptions['authorizeSubscribe']> = (client, sub: Subscription, callback) => {
    const who = identities.get(client)
    let allowed = false
    try {
      allowed = who !== undefined && (who.internal ? filterWithin(sub.topic, `${prefix}/#`) : maySubscribe(sub.topic, who.filters, prefix))
    } catch (err) {
      log.error({ err: errorMessage(err) }, 'subscription check failed; refused')
    }
    // Each filter costs the broker memory (and a persistent session a row in broker.db): a device
    // subscribing ever more distinct allowed filters grew the gateway without bound.
    const full = allowed && !who!.internal && !who!.subscriptions.has(sub.topic) && who!.subscriptions.size >= maxSubscriptions
    if (allowed && !full) {
      if (!who!.internal) who!.subscriptions.add(sub.topic)
      return callback(null, sub)
    }
    const reason = full ? 'limit' : subscribeDenial(sub.topic)
    stats.deniedSubscribe[reason] = (stats.deniedSubscribe[reason] ?? 0) + 1
    const id = who?.id ?? client.id
    denials.warn(`client ${logged(id)}`, { client: logged(id), action: 'subscribe', rule: reason, filter: logged(sub.topic) }, 'subscription refused (granted 0x80)')
    // Granted 0x80, the connection stays [MQTT-3.9.3]: a device asking too much is told so, not cut off.
    callback(null, null)
  }

  return {
    hooks: { authenticate, authorizePublish, authorizeSubscribe },
    attach(aedes) {
      aedes.on('unsubscribe', (topics, client) => {
        const who = identities.get(client)
        if (who !== undefined) for (const t of topics) who.subscriptions.delete(t)
      })
      // A revocation that lands between a login and the client's registration is seen here.
      aedes.on('client', (client) => watch.registered(client))
      watch.start(aedes, opts.revokeCheckMs ?? 500)
    },
    stats: () => structuredClone(stats),
    close() {
      closed = true
      watch.stop()
      for (const [t, answer] of held) {
        clearTimeout(t)
        answer()
      }
      held.clear()
    },
  }
}

/**
 * With device logins off (development defaults), the authenticate hook that keeps the gateway's
 * own client ids its own: any client logs in, but under one of those ids only with its secret
 * (else CONNACK 2, identifier rejected). A device run with OUTPOST_DEVICE_ID=gateway took the
 * gateway's session, and the gateway took it back, in turns, for as long as both ran.
 */
export function ownClientIdsOnly(internal: ReadonlyMap<string, string>): NonNullable<AedesOptions['authenticate']> {
  const secrets = new Map([...internal].map(([id, secret]) => [id, digest(secret)]))
  return (client, username, password, done) => {
    const own = secrets.get(client.id)
    if (own === undefined || (username === client.id && password !== undefined && timingSafeEqual(digest(password), own))) return done(null, true)
    const err = Object.assign(new OutpostError(ErrorCode.NOT_AUTHENTICATED, `login refused: client id ${client.id} is the gateway's own`), { returnCode: IDENTIFIER_REJECTED })
    done(err as Parameters<typeof done>[0], false)
  }
}

function digest(secret: string | Buffer): Buffer {
  return createHash('sha256').update(secret).digest()
}

function asBuffer(payload: PublishPacket['payload'] | undefined): Buffer {
  if (payload === undefined) return Buffer.alloc(0)
  return typeof payload === 'string' ? Buffer.from(payload) : (payload as Buffer)
}

/** The peer of a client's connection (TCP, TLS, or the HTTP request of a WebSocket). */
function remoteAddress(client: Client): string {
  return (client.conn as { remoteAddress?: string }).remoteAddress ?? client.req?.socket?.remoteAddress ?? 'unknown'
}
