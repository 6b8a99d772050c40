import type { Logger } from 'pino'
import type { AuthStats } from '../auth/broker-auth.js'
import type { MqttBroker } from '../broker/mqtt-broker.js'
import type { Registry } from '../registry/registry.js'

/** What the HTTP face reads of a running gateway. */
export interface GatewayView {
  /** The broker now running (a new one after a drill), or undefined while it is down. */
  broker(): MqttBroker | undefined
  /** Whether the gateway database takes writes now. */
  databaseWritable(): boolean
  registry: Registry
  auth(): AuthStats
}

export interface HttpServer {
  readonly url: string
  readonly port: number
  close(): Promise<void>
}

export interface HttpServerOptions {
  host: string
  port: number
  /** Bearer token for every route but /healthz, when set. */
  token?: string
  view: GatewayView
  log: Logger
}

/** STUB (issue 13, part E replaces it). */
export async function startHttpServer(_opts: HttpServerOptions): Promise<HttpServer | undefined> {
  return undefined
}
