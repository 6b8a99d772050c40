import type { WireError } from '../errors.js'

/** The envelope version this runtime writes and reads. */
export const ENVELOPE_VERSION = 1

/** What an envelope carries: a command, the reply to one, an event, or a device's presence. */
export const EnvelopeKind = {
  command: 'command',
  reply: 'reply',
  event: 'event',
  presence: 'presence',
} as const
export type EnvelopeKind = (typeof EnvelopeKind)[keyof typeof EnvelopeKind]

/**
 * One message, as every bridge moves it. Field names here are for code; on the wire the
 * envelope is a CBOR array in the order documented in `runtime/wire/README.md`.
 */
export interface Envelope {
  /** Envelope format version (always ENVELOPE_VERSION when written by this runtime). */
  v: number
  kind: EnvelopeKind
  /** Stable, time-ordered message id; receivers drop duplicates by it. */
  id: string
  /** Device that sent the message. */
  src: string
  /** Process instance on that device (changes on every start). */
  inst: string
  /** Created-at, epoch milliseconds. */
  at: number
  service?: string
  version?: string
  /** Command name (command) or event name (event). */
  name?: string
  /** Correlation id: on a reply, the id of the command it answers. */
  corr?: string
  /** Device a reply must go to. */
  replyTo?: string
  /** Device a command is addressed to. */
  target?: string
  /** Epoch milliseconds after which nobody waits for the outcome. */
  deadline?: number
  /** W3C trace context. */
  traceparent?: string
  tenant?: string
  principal?: string
  payload?: unknown
  /** Set on a failed reply; only `{code, message, details}` crosses the wire. */
  error?: WireError
}

/**
 * The presence payload format this runtime writes. 1 (or no `v`): `online` and each service's
 * commands and events; 2 adds the runtime's version and each service's queues and schedules.
 * Every field 2 adds is optional, so a reader of either takes both.
 */
export const PRESENCE_VERSION = 2

/** One service in a presence: its contract's names (what it answers, emits, runs). */
export interface PresenceService {
  name: string
  version: string
  commands: string[]
  events: string[]
  /** Queues its contract declares (presence 2). */
  queues?: string[]
  /** Schedules the service runs (presence 2). */
  schedules?: string[]
}

/** Payload of a presence envelope: what a device runs, announced on (re)connect and, as last will, when it goes away. */
export interface PresencePayload {
  /** Payload format (PRESENCE_VERSION); absent in the first. */
  v?: number
  online: boolean
  /** Version of the Outpost runtime the device runs (presence 2). */
  runtime?: string
  services: PresenceService[]
}
