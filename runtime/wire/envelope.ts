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

/** Payload of a presence envelope: what a device runs, announced on (re)connect and, as last will, when it goes away. */
export interface PresencePayload {
  online: boolean
  services: { name: string; version: string; commands: string[]; events: string[] }[]
}
