import type { LevelWithSilent } from 'pino'
import type { ForwardConfig } from '../forward/forward-config.js'
import { defaultCommandsConfig, type CommandsConfig } from '../commands/command-config.js'

// The gateway's configuration, as the rest of the gateway sees it: every value checked and every
// default applied (gateway/config/load-config.ts reads it from a YAML or JSON file and the
// environment). With no file, the gateway runs on the development defaults: authentication
// off, an in-memory broker state, HTTP on 127.0.0.1.

/** What a role may subscribe to beyond a device's own commands and replies and `ob/+/status`. */
export interface RoleConfig {
  /** Event topic filters under `ob/+/evt/…` (MQTT wildcards allowed), e.g. `ob/+/evt/thermo/1/+`. */
  subscribe: string[]
}

export interface GatewayConfig {
  /**
   * Where the gateway keeps gateway.db (devices, registry) and broker.db (broker state); the
   * loader's default is `.outpost/gateway`. Undefined (a gateway started from code, a test):
   * nothing is kept on disk.
   */
  dataDir?: string
  mqtt: {
    /** Interface to bind, default 127.0.0.1. */
    host: string
    /** TCP port, default 1883 (0: a free port). */
    port: number
    /** Largest packet a client may send, bytes after the fixed header (default 1 MiB; 0: no limit). */
    maxPacketBytes: number
    /** Most topic levels in a publish or subscription (default 16). */
    maxTopicLevels: number
    /** Most clients connected at once (default 10 000); one more is refused at once. */
    maxConnections: number
    /**
     * How long a client's socket may take no bytes while the broker waits for it to drain, ms
     * (default 10 000; 0: aedes' 60 s drainTimeout alone); then it is cut off, as the publishers
     * of what it subscribes to wait meanwhile.
     */
    stallMs: number
    /**
     * Most QoS 1/2 messages queued for one client, in flight to it or waiting for its persistent
     * session to come back (default 10 000; 0: no limit). Beyond, new messages for it are not
     * kept, counted and logged. With `persistence: sqlite`.
     */
    sessionMaxMessages: number
    /** Most payload bytes queued for one client (default 64 MiB; 0: no limit), as `sessionMaxMessages`. */
    sessionMaxBytes: number
    /** Most payload bytes queued over all clients together (default 512 MiB; 0: no limit), as `sessionMaxMessages`. */
    sessionsMaxBytes: number
    /**
     * Most topics holding a retained message (default 100 000; 0: no limit). Beyond, a retained
     * message on a new topic goes to the subscribers of the moment but is not kept; counted and logged.
     */
    retainedMaxTopics: number
    /** Most payload and topic bytes of retained messages (default 256 MiB; 0: no limit), as `retainedMaxTopics`. */
    retainedMaxBytes: number
    /** MQTT over TLS (`mqtts://`), when set. */
    tls?: { port: number; certFile: string; keyFile: string; caFile?: string }
    /** MQTT over WebSocket, when set. */
    websocket?: { port: number; path: string }
  }
  auth: {
    /** Devices must log in with the credentials of the device table (default: true with a config file, false without). */
    enabled: boolean
    /** Roles by name; `device` is the role `outpost devices add` gives by default. */
    roles: Record<string, RoleConfig>
  }
  /** Broker state: `sqlite` (broker.db, survives restarts; the default with a config file) or `memory`. */
  persistence: 'sqlite' | 'memory'
  http: {
    enabled: boolean
    /** Default 127.0.0.1. */
    host: string
    /** Default 8080 (0: a free port). */
    port: number
    /** Bearer token every route but /healthz asks for, when set. A secret: redacted in --print-config. */
    token?: string
  }
  log: {
    level: LevelWithSilent
    format?: 'pretty' | 'json'
  }
  /** Events forwarded to cloud targets (NATS JetStream, RabbitMQ); none when unset. See docs/forwarding.md. */
  forward?: ForwardConfig
  /** How cloud callers reach device commands (HTTP, NATS request/reply, RabbitMQ RPC). See docs/forwarding.md. */
  commands: CommandsConfig
  /** The file this came from, if any. */
  source?: string
}

/** The role `outpost devices add` gives when none is named, and its default: every device's events. */
export const DEFAULT_ROLE = 'device'
export const DEFAULT_ROLES: Record<string, RoleConfig> = { [DEFAULT_ROLE]: { subscribe: ['ob/+/evt/#'] } }

/** The development defaults: what the gateway runs on with no config file. */
export function defaultGatewayConfig(): GatewayConfig {
  return {
    mqtt: { host: '127.0.0.1', port: 1883, maxPacketBytes: 1024 * 1024, maxTopicLevels: 16, maxConnections: 10_000, stallMs: 10_000, sessionMaxMessages: 10_000, sessionMaxBytes: 64 * 1024 * 1024, sessionsMaxBytes: 512 * 1024 * 1024, retainedMaxTopics: 100_000, retainedMaxBytes: 256 * 1024 * 1024 },
    auth: { enabled: false, roles: structuredClone(DEFAULT_ROLES) },
    persistence: 'memory',
    http: { enabled: false, host: '127.0.0.1', port: 8080 },
    log: { level: 'info' },
    commands: defaultCommandsConfig(),
  }
}
