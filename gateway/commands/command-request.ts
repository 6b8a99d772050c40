// What the three command front ends (HTTP, NATS request/reply, RabbitMQ RPC) share: reading a
// request's body, deadline, offline policy and trace context the same way, building the
// CommandRequest once, writing replies, and counting outcomes.
import { ErrorCode, OutpostError, errorMessage, type WireError } from '../../runtime/errors.js'
import { MAX_CBOR_DEPTH } from '../../runtime/wire/cbor-scan.js'
import { createEnvelopeCodec, DEFAULT_MAX_FRAME_BYTES } from '../../runtime/wire/codec.js'
import { ENVELOPE_VERSION } from '../../runtime/wire/envelope.js'
import { jsonReplacer } from '../forward/router.js'
import type { CommandRequest, OfflinePolicy } from './command-router.js'
import { quoted } from './shown.js'

/** A running command front end (NATS or RabbitMQ), as the gateway holds it. */
export interface CommandFrontEnd {
  /**
   * Requests answered with a result (`handled`) and requests that failed, by error code. Two keys
   * are not error codes: `NO_REPLY` (a request with no reply address: nobody to answer, dropped),
   * `REPLY_REFUSED` (a reply address outside the configured prefixes: dropped, nothing sent there),
   * `REPLY_LOST` (the reply could not be sent: the link dropped, or it was too large), and
   * `REDELIVERED` (RabbitMQ: a request that came back too many times, its connection lost each
   * time before it was done, dropped). `redelivered` (RabbitMQ only): deliveries the broker marked
   * as redelivered (a connection was lost before the request was acknowledged; it may run again).
   */
  stats(): CommandFrontEndStats
  /** Stops taking requests and closes the connection; calls in flight are not waited for. */
  close(): Promise<void>
}

/** What `CommandFrontEnd.stats` counts. */
export interface CommandFrontEndStats {
  handled: number
  failed: Record<string, number>
  redelivered?: number
}

/** Largest request body taken, bytes: as over HTTP (a device's MQTT packet limit is 1 MiB by default). */
export const MAX_COMMAND_BODY_BYTES = 1024 * 1024

/**
 * Largest payload a command carries, bytes of CBOR: a device reads frames of at most
 * DEFAULT_MAX_FRAME_BYTES (256 KiB) unless configured otherwise, and the envelope's other fields
 * (names, ids, trace context) take well under 4 KiB. A larger payload would never be read by the
 * device (the call could only time out), and one past the broker's packet limit made the broker
 * close the gateway's own connection, which sent it again at every reconnect: no command got
 * through any more. JSON can grow as CBOR (`0.1` is 3 bytes of JSON, 9 of CBOR), so the body's
 * size does not bound it; the payload is measured as it will travel.
 */
export const MAX_COMMAND_PAYLOAD_BYTES = DEFAULT_MAX_FRAME_BYTES - 4 * 1024

/** Deepest nesting of arrays and objects in a payload: the envelope array around it is one more level (MAX_CBOR_DEPTH in all). */
export const MAX_COMMAND_PAYLOAD_DEPTH = MAX_CBOR_DEPTH - 1

const utf8 = new TextDecoder('utf-8', { fatal: true })

/** The payload of a JSON request body (empty: `{}`). @throws BAD_ARGUMENT when it is too large, not UTF-8 or not JSON */
export function parseJsonBody(data: Uint8Array, what = 'the request body'): unknown {
  if (data.byteLength > MAX_COMMAND_BODY_BYTES) throw new OutpostError(ErrorCode.BAD_ARGUMENT, `${what} is larger than ${MAX_COMMAND_BODY_BYTES} bytes`)
  let text: string
  try {
    text = utf8.decode(data)
  } catch {
    throw new OutpostError(ErrorCode.BAD_ARGUMENT, `${what} is not UTF-8 text`)
  }
  if (text.trim() === '') return {}
  let doc: unknown
  try {
    doc = JSON.parse(text) as unknown
  } catch (err) {
    throw new OutpostError(ErrorCode.BAD_ARGUMENT, `${what} is not JSON: ${errorMessage(err).slice(0, 200)}`)
  }
  // A `\uD800` escape alone is valid JSON but no text: sent on, it reached the device as U+FFFD.
  if (/\\u[dD][89a-fA-F]/.test(text) && !wellFormed(doc)) throw new OutpostError(ErrorCode.BAD_ARGUMENT, `${what} holds a string with a lone surrogate (\\uD800–\\uDFFF not in a pair), which is no text`)
  return doc
}

/** A high surrogate not followed by a low one, or a low one not after a high one. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/** Whether every string of a parsed JSON value (keys too) is well-formed Unicode. */
function wellFormed(doc: unknown): boolean {
  const todo: unknown[] = [doc]
  while (todo.length > 0) {
    const x = todo.pop()
    if (typeof x === 'string') {
      if (LONE_SURROGATE.test(x)) return false
    } else if (typeof x === 'object' && x !== null) {
      for (const [k, val] of Object.entries(x)) {
        if (LONE_SURROGATE.test(k)) return false
        todo.push(val)
      }
    }
  }
  return true
}

/** A reply body as bytes. A result that JSON cannot carry (a BigInt, say) becomes an INTERNAL error reply; such error details are dropped. */
export function encodeReply(outcome: { result: unknown } | { error: WireError }): { body: Buffer; error?: string } {
  const code = 'error' in outcome ? outcome.error.code : undefined
  try {
    return { body: Buffer.from(JSON.stringify(outcome, jsonReplacer)), ...(code === undefined ? {} : { error: code }) }
  } catch (err) {
    // An error keeps its code and message and loses its details.
    const error: WireError = 'error' in outcome
      ? { code: outcome.error.code, message: outcome.error.message }
      : { code: ErrorCode.INTERNAL, message: `the device's result cannot be written as JSON: ${errorMessage(err).slice(0, 200)}` }
    return { body: Buffer.from(JSON.stringify({ error })), error: error.code }
  }
}

/** Counters behind `CommandFrontEnd.stats`; `redelivered` is read once `redelivery` was called (a front end whose broker redelivers). */
export function createCommandStats(): { ok(): void; fail(code: string): void; redelivery(): void; read(): CommandFrontEndStats } {
  let handled = 0
  let redelivered: number | undefined
  const failed: Record<string, number> = {}
  return {
    ok: () => void handled++,
    fail: (code) => void (failed[code] = (failed[code] ?? 0) + 1),
    redelivery: () => void (redelivered = (redelivered ?? 0) + 1),
    read: () => ({ handled, failed: { ...failed }, ...(redelivered === undefined ? {} : { redelivered }) }),
  }
}

/** A deadline header or field as the HTTP API reads `?timeoutMs=` (the router checks the range). @throws BAD_ARGUMENT */
export function parseTimeout(t: string | undefined, what: string): number | undefined {
  if (t === undefined) return undefined
  if (!/^\d{1,9}$/.test(t)) throw new OutpostError(ErrorCode.BAD_ARGUMENT, `${what} ${quoted(t, 32)} is not a whole number of milliseconds`)
  return Number(t)
}

/** When a caller sent its request, epoch ms (a NATS request's `Outpost-Sent-At`). @throws BAD_ARGUMENT for anything but a whole number */
export function parseSentAt(t: string | undefined, what: string): number | undefined {
  if (t === undefined) return undefined
  if (!/^\d{1,16}$/.test(t)) throw new OutpostError(ErrorCode.BAD_ARGUMENT, `${what} ${quoted(t, 32)} is not a time in epoch milliseconds`)
  return Number(t)
}

/** An offline policy as the HTTP API reads `?offline=`. @throws BAD_ARGUMENT for anything but fail or hold */
export function parseOffline(o: string | undefined, what: string): OfflinePolicy | undefined {
  if (o === undefined || o === 'fail' || o === 'hold') return o
  throw new OutpostError(ErrorCode.BAD_ARGUMENT, `${what} ${quoted(o, 32)} is not accepted; expected fail or hold`)
}

/** A W3C traceparent, or undefined for anything else (dropped, as the HTTP API does). */
export function validTraceparent(t: unknown): string | undefined {
  return typeof t === 'string' && /^[\da-f]{2}-[\da-f]{32}-[\da-f]{16}-[\da-f]{2}$/.test(t) ? t : undefined
}

/** How deeply `value` nests arrays and objects, counted without recursion; stops once past `limit`. */
function nestingOver(value: unknown, limit: number): boolean {
  const stack: [unknown, number][] = [[value, 0]]
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!
    if (typeof v !== 'object' || v === null) continue
    if (depth + 1 > limit) return true
    for (const child of Array.isArray(v) ? v : Object.values(v)) if (typeof child === 'object' && child !== null) stack.push([child, depth + 1])
  }
  return false
}

// Measures payloads as the runtime writes them (one codec for the module: encoding is synchronous).
// Without a frame limit of its own: it measures, and the limit is checked below, with its own message.
const measure = createEnvelopeCodec({ maxFrameBytes: Number.MAX_SAFE_INTEGER })

/**
 * Checks that a payload can reach a device: nested at most MAX_COMMAND_PAYLOAD_DEPTH levels and at
 * most MAX_COMMAND_PAYLOAD_BYTES as CBOR.
 * @throws BAD_ARGUMENT naming what is wrong
 */
export function checkCommandPayload(payload: unknown): void {
  if (nestingOver(payload, MAX_COMMAND_PAYLOAD_DEPTH)) {
    throw new OutpostError(ErrorCode.BAD_ARGUMENT, `the payload nests arrays or objects more than ${MAX_COMMAND_PAYLOAD_DEPTH} levels deep; a device does not read that`)
  }
  let bytes: number
  try {
    bytes = measure.encode({ v: ENVELOPE_VERSION, kind: 'command', id: '-', src: '-', inst: '-', at: 0, service: '-', version: '-', name: '-', payload }).byteLength
  } catch (err) {
    throw new OutpostError(ErrorCode.BAD_ARGUMENT, `the payload cannot be sent to a device: ${errorMessage(err).slice(0, 200)}`)
  }
  if (bytes > MAX_COMMAND_PAYLOAD_BYTES) {
    throw new OutpostError(ErrorCode.BAD_ARGUMENT, `the payload takes ${bytes} bytes as sent to a device (CBOR); at most ${MAX_COMMAND_PAYLOAD_BYTES} are taken (a device reads frames of ${DEFAULT_MAX_FRAME_BYTES} bytes)`)
  }
}

/** Which command a request names (no device: any live device that runs it). */
export type CommandTarget = Pick<CommandRequest, 'device' | 'service' | 'version' | 'command'>

/** What a caller may add to a command, as each front end read it (undefined: not given). */
export interface CommandExtras {
  timeoutMs?: number | undefined
  offline?: OfflinePolicy | undefined
  /** Anything; kept only when it is a W3C traceparent. */
  traceparent?: unknown
  /** When the caller sent it (epoch ms), if its protocol says. */
  sentAt?: number | undefined
}

/** The request for the router: target, payload, and only the extras that were given. @throws BAD_ARGUMENT for a payload no device would read (checkCommandPayload) */
export function commandRequest(target: CommandTarget, payload: unknown, extras: CommandExtras = {}): CommandRequest {
  checkCommandPayload(payload)
  const traceparent = validTraceparent(extras.traceparent)
  return {
    ...(target.device === undefined ? {} : { device: target.device }),
    service: target.service,
    version: target.version,
    command: target.command,
    payload,
    ...(extras.timeoutMs === undefined ? {} : { timeoutMs: extras.timeoutMs }),
    ...(extras.offline === undefined ? {} : { offline: extras.offline }),
    ...(traceparent === undefined ? {} : { traceparent }),
    ...(extras.sentAt === undefined ? {} : { sentAt: extras.sentAt }),
  }
}
