import type { Logger } from 'pino'
import type { BackoffOptions } from '../../backoff.js'

/** Options of a NATS bridge (`createNatsBridge`). */
export interface NatsBridgeOptions {
  /** NATS server URL(s), e.g. `nats://127.0.0.1:4222`; the client fails over between them. */
  servers: string | string[]
  /** The identity it connects as (the NATS connection name); a topic level. */
  deviceId: string
  user?: string
  pass?: string
  token?: string
  logger?: Logger
  /** Reconnect backoff (default 100 ms doubling to 30 s, jitter in the upper half of each step). */
  reconnect?: BackoffOptions
  /**
   * Literal subject tokens put in front of every frame subject (`"site1"`: topic `ob/d/status` is
   * subject `site1.ob.d.status`), so several Outpost networks share one NATS account. Default none:
   * a topic is the subject an MQTT client of nats-server's MQTT listener would use. (This is not
   * the messaging layer's `topicPrefix`, which names the first topic level.)
   */
  subjectPrefix?: string
  /** JetStream stream of retained messages and will records (default `OUTPOST_RETAINED`, with the subject prefix's tokens appended). */
  stream?: string
  /** Largest inbound payload taken, bytes (default 256 KiB); larger frames are dropped as FRAME_TOO_LARGE. */
  maxPayloadBytes?: number
  /** How often this bridge probes the will records of other devices, ms (default 2 000; 0: never, see nats-will.ts). */
  willCheckMs?: number
  /** Timeout of one connection attempt, ms (default 5 000). */
  connectTimeoutMs?: number
  /** Client PING interval, ms (default 30 000): how soon a silently dead connection is noticed (two missed PONGs). */
  pingIntervalMs?: number
}

/** Subject root of the bridge's own subjects (retained store, will records, liveness): never a frame subject. */
export const rootOf = (prefix: readonly string[]): string => ['_outpost', ...prefix].join('.')

/** Default stream name for a subject prefix. */
export const streamOf = (prefix: readonly string[]): string => ['OUTPOST_RETAINED', ...prefix].join('_')
