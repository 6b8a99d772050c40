import type { WireError } from '../errors.js'

/** The envelope version this runtime writes and reads. */
export const ENVELOPE_VERSION = 1

/** What an envelope carries: a command, the reply to one, an event, a device's presence, or the schemas of what it serves. */
export const EnvelopeKind = {
  command: 'command',
  reply: 'reply',
  event: 'event',
  presence: 'presence',
  contract: 'contract',
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

/** The contract document format this runtime writes (`ContractPayload.v`). */
export const CONTRACT_VERSION = 1

/**
 * Largest contract document a device publishes and a gateway keeps, bytes (its frame). A device
 * whose document would be larger publishes none; a gateway ignores a larger one.
 */
export const MAX_CONTRACT_BYTES = 256 * 1024

/** A JSON Schema (draft-07): an object, or `true`/`false`. */
export type JsonSchema = Record<string, unknown> | boolean

/** One command in a contract document: the JSON Schema of its payload and of its result. */
export interface ContractCommand {
  payload: JsonSchema
  result?: JsonSchema
}

/** One served service in a contract document: its name, version, and the schemas of its commands and events. */
export interface ContractService {
  name: string
  version: string
  commands: Record<string, ContractCommand>
  /** Event name → JSON Schema of its payload (queue result events included). */
  events: Record<string, JsonSchema>
}

/**
 * Payload of a contract envelope (kind `contract`, retained on `<prefix>/<device>/contract`): the
 * schemas of every service the device serves, converted from its valibot schemas. A part that
 * JSON Schema cannot express (bytes, dates, custom checks, transformations) is left open, so the
 * document never refuses a value the device takes. A reader ignores fields it does not know.
 */
export interface ContractPayload {
  /** Document format (CONTRACT_VERSION). */
  v: number
  /** JSON Schema dialect of every schema in it: `draft-07`. */
  dialect: string
  services: ContractService[]
}
