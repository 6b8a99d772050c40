// What the gateway forwards to the cloud, as the rest of the gateway sees it (defaults applied).
// gateway/config/load-config.ts reads it from the `forward:` section of the config file; see
// docs/forwarding.md for the user's view.
import type { ForwardEncoding } from './target.js'

/** What happens to a new event for a target whose queue is full. */
export type WhenFull = 'drop-oldest' | 'drop-newest' | 'refuse'

/** Settings every target has. */
export interface TargetCommon {
  /** Body format: `cbor` (the envelope frame as the device sent it, default) or `json`. */
  encoding: ForwardEncoding
  /** Messages sent and not yet confirmed, at most (default 256). */
  window: number
  /** Longest wait for one confirmation before the connection is taken for lost, ms (default 10 000). */
  confirmTimeoutMs: number
  /** Bytes (bodies and headers) the forward queue keeps for this target at most (default 256 MiB). */
  maxBytes: number
  /**
   * A full queue and a new event: `drop-oldest` (default: the oldest queued event is dropped and
   * counted), `drop-newest` (the new one is not queued for this target, counted), `refuse` (the
   * device's publish is not acknowledged: it keeps the event in its outbox and sends it again later).
   */
  whenFull: WhenFull
}

/** NATS JetStream. */
export interface NatsTargetConfig extends TargetCommon {
  type: 'nats'
  /** Server URLs, e.g. `nats://127.0.0.1:4222`. */
  servers: string[]
  /** Credentials, when the server asks for them (secrets: redacted in --print-config). */
  user?: string
  pass?: string
  token?: string
  stream: {
    /** Stream name, e.g. `OUTPOST_EVENTS`. */
    name: string
    /** Subjects the stream takes, when the gateway creates it (default: the subject template's fixed start + `>`). */
    subjects: string[]
    /** Create the stream if it does not exist (default true); false: bind to an existing one, TARGET_REJECTED if there is none. */
    create: boolean
    /** JetStream's duplicate window for a created stream, ms (default 120 000): a re-sent id within it is stored once. */
    duplicateWindowMs: number
  }
  /** Subject template: `{device}`, `{service}`, `{version}`, `{event}` (default `outpost.evt.{device}.{service}.{version}.{event}`). */
  subject: string
}

/** RabbitMQ (AMQP 0-9-1). */
export interface RabbitTargetConfig extends TargetCommon {
  type: 'rabbitmq'
  /** `amqp://user:pass@host:port/vhost` (the password is redacted in --print-config). */
  url: string
  exchange: {
    /** Exchange name, e.g. `outpost.events`. */
    name: string
    /** Exchange type when the gateway declares it (default `topic`). */
    type: 'topic' | 'direct' | 'fanout' | 'headers'
    /** Declare it (durable) if it does not exist (default true); false: it must exist (TARGET_REJECTED otherwise). */
    create: boolean
  }
  /** A durable queue to declare and bind to the exchange, so nothing is lost before a consumer exists (optional). */
  queue?: { name: string; bindingKey: string }
  /** Routing key template: `{device}`, `{service}`, `{version}`, `{event}` (default `{device}.{service}.{version}.{event}`). */
  routingKey: string
}

export type TargetConfig = NatsTargetConfig | RabbitTargetConfig

/** Which events go where. An event goes to every target of every route it matches, once per target. */
export interface RouteConfig {
  /** Event filters `<service>/<version>/<event>`, MQTT syntax (`+` one level, `#` the rest; default `['#']`). */
  events: string[]
  /** Device id patterns, `*` for any run of characters (default `['*']`). */
  devices: string[]
  /** Only the result events of these queues (`<queue>.completed`, …), when set. */
  queues?: string[]
  /** Target names. */
  to: string[]
}

export interface ForwardConfig {
  targets: Record<string, TargetConfig>
  routes: RouteConfig[]
}

export const FORWARD_DEFAULTS = {
  encoding: 'cbor',
  window: 256,
  confirmTimeoutMs: 10_000,
  maxBytes: 256 * 1024 * 1024,
  whenFull: 'drop-oldest',
  natsSubject: 'outpost.evt.{device}.{service}.{version}.{event}',
  rabbitRoutingKey: '{device}.{service}.{version}.{event}',
  duplicateWindowMs: 120_000,
} as const
