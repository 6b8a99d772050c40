// How cloud callers reach device commands through the gateway (the `commands:` section of the
// config file): deadlines, the offline policy, and per front end (HTTP, NATS request/reply,
// RabbitMQ RPC) whether it is on and which commands its callers may call.
import type { CommandDefaults } from './command-router.js'

/** Rules `<device>/<service>/<version>/<command>` with MQTT wildcards: `#` allows everything, `+/thermo/1/+` every thermo@1 command on any device. */
export type AllowRules = string[]

export interface NatsCommandsConfig {
  servers: string[]
  user?: string
  pass?: string
  token?: string
  /** Subject prefix: requests go to `<subject>.<device>.<service>.<version>.<command>` (`_` as device: any live device). Default `outpost.cmd`. */
  subject: string
  /** Queue group, so several gateways on one NATS answer each request once (default `outpost-gateway`). */
  queueGroup: string
  allow: AllowRules
  /**
   * Subject prefixes a request's reply subject must start with (default `_INBOX`, the inbox of
   * the NATS clients): the gateway publishes a reply with its own connection, so a reply subject
   * anywhere else let a caller that may only send commands make it publish there (a JetStream
   * API subject, a stream's subjects).
   */
  replyPrefixes: string[]
}

export interface RabbitCommandsConfig {
  url: string
  /** Durable queue the gateway consumes requests from (default `outpost.commands`). */
  queue: string
  /** Requests handled at once (default 64). */
  prefetch: number
  allow: AllowRules
  /**
   * Queue name prefixes a request's replyTo must start with (default `amq.rabbitmq.reply-to`,
   * direct reply-to, and `amq.gen-`, queues the broker named): the reply goes through the default
   * exchange to that queue, so any other name let a caller put replies into any queue (the
   * events' own).
   */
  replyToPrefixes: string[]
}

export interface CommandsConfig extends CommandDefaults {
  http: { enabled: boolean; allow: AllowRules }
  nats?: NatsCommandsConfig
  rabbitmq?: RabbitCommandsConfig
}

/** Without a `commands:` section: HTTP commands on (behind the HTTP token, when one is set), every command allowed. */
export function defaultCommandsConfig(): CommandsConfig {
  return { timeoutMs: 10_000, maxTimeoutMs: 300_000, offline: 'fail', maxPending: 4_096, http: { enabled: true, allow: ['#'] } }
}
