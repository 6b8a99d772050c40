// What the three command front ends (HTTP, NATS request/reply, RabbitMQ RPC) share: reading a
// request's body, deadline, offline policy and trace context the same way, building the
// CommandRequest once, writing replies, and counting outcomes.
import { ErrorCode, OutpostError, errorMessage, type WireError } from '../../runtime/errors.js'
import { jsonReplacer } from '../forward/router.js'
import type { CommandRequest, OfflinePolicy } from './command-router.js'

/** A running command front end (NATS or RabbitMQ), as the gateway holds it. */
export interface CommandFrontEnd {
  /**
   * Requests answered with a result (`handled`) and requests that failed, by error code. Two keys
   * are not error codes: `NO_REPLY` (a request with no reply address: nobody to answer, dropped)
   * and `REPLY_LOST` (the reply could not be sent: the link dropped, or it was too large).
   */
  stats(): { handled: number; failed: Record<string, number> }
  /** Stops taking requests and closes the connection; calls in flight are not waited for. */
  close(): Promise<void>
}

/** Largest request body taken, bytes: as over HTTP (a device's MQTT packet limit is 1 MiB by default). */
export const MAX_COMMAND_BODY_BYTES = 1024 * 1024

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
  try {
    return JSON.parse(text) as unknown
  } catch (err) {
    throw new OutpostError(ErrorCode.BAD_ARGUMENT, `${what} is not JSON: ${errorMessage(err).slice(0, 200)}`)
  }
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

/** Counters behind `CommandFrontEnd.stats`. */
export function createCommandStats(): { ok(): void; fail(code: string): void; read(): { handled: number; failed: Record<string, number> } } {
  let handled = 0
  const failed: Record<string, number> = {}
  return {
    ok: () => void handled++,
    fail: (code) => void (failed[code] = (failed[code] ?? 0) + 1),
    read: () => ({ handled, failed: { ...failed } }),
  }
}

/** A deadline header or field as the HTTP API reads `?timeoutMs=` (the router checks the range). @throws BAD_ARGUMENT */
export function parseTimeout(t: string | undefined, what: string): number | undefined {
  if (t === undefined) return undefined
  if (!/^\d{1,9}$/.test(t)) throw new OutpostError(ErrorCode.BAD_ARGUMENT, `${what} "${t.slice(0, 32)}" is not a whole number of milliseconds`)
  return Number(t)
}

/** An offline policy as the HTTP API reads `?offline=`. @throws BAD_ARGUMENT for anything but fail or hold */
export function parseOffline(o: string | undefined, what: string): OfflinePolicy | undefined {
  if (o === undefined || o === 'fail' || o === 'hold') return o
  throw new OutpostError(ErrorCode.BAD_ARGUMENT, `${what} "${o.slice(0, 32)}" is not accepted; expected fail or hold`)
}

/** A W3C traceparent, or undefined for anything else (dropped, as the HTTP API does). */
export function validTraceparent(t: unknown): string | undefined {
  return typeof t === 'string' && /^[\da-f]{2}-[\da-f]{32}-[\da-f]{16}-[\da-f]{2}$/.test(t) ? t : undefined
}

/** Which command a request names (no device: any live device that runs it). */
export type CommandTarget = Pick<CommandRequest, 'device' | 'service' | 'version' | 'command'>

/** What a caller may add to a command, as each front end read it (undefined: not given). */
export interface CommandExtras {
  timeoutMs?: number | undefined
  offline?: OfflinePolicy | undefined
  /** Anything; kept only when it is a W3C traceparent. */
  traceparent?: unknown
}

/** The request for the router: target, payload, and only the extras that were given. */
export function commandRequest(target: CommandTarget, payload: unknown, extras: CommandExtras = {}): CommandRequest {
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
  }
}
