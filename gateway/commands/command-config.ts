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
}

export interface RabbitCommandsConfig {
  url: string
  /** Durable queue the gateway consumes requests from (default `outpost.commands`). */
  queue: string
  /** Requests handled at once (default 64). */
  prefetch: number
  allow: AllowRules
}

export interface CommandsConfig extends CommandDefaults {
  http: { enabled: boolean; allow: AllowRules }
  nats?: NatsCommandsConfig
  rabbitmq?: RabbitCommandsConfig
}

/** Without a `commands:` section: HTTP commands on (behind the HTTP token, when one is set), every command allowed. */
export function defaultCommandsConfig(): CommandsConfig {
  return { timeoutMs: 10_000, maxTimeoutMs: 300_000, offline: 'fail', http: { enabled: true, allow: ['#'] } }
}
