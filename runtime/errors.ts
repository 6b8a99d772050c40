/** Stable error codes: the only thing that tells Outpost errors apart (never the message text). */
export const ErrorCode = {
  /** A payload or result failed its schema; `details` lists the issue paths. */
  VALIDATION_FAILED: 'VALIDATION_FAILED',
  /** No live service, command or subscription answers this message. */
  NO_HANDLER: 'NO_HANDLER',
  /** A handler failed; the stack stays on the device that ran it. */
  INTERNAL: 'INTERNAL',
  /** The caller's deadline passed before a reply arrived. */
  TIMEOUT: 'TIMEOUT',
  /** The work was cancelled (abort signal, shutdown). */
  CANCELLED: 'CANCELLED',
  /** The broker cannot be reached, or the connection dropped. */
  BRIDGE_UNAVAILABLE: 'BRIDGE_UNAVAILABLE',
  /** The bridge was closed; nothing more goes through it. */
  BRIDGE_CLOSED: 'BRIDGE_CLOSED',
  /** Bytes that are not CBOR, or CBOR cut short. */
  MALFORMED_FRAME: 'MALFORMED_FRAME',
  /** A frame larger than the configured limit. */
  FRAME_TOO_LARGE: 'FRAME_TOO_LARGE',
  /** An envelope version this runtime does not speak. */
  UNSUPPORTED_VERSION: 'UNSUPPORTED_VERSION',
  /** CBOR that decodes, but not into a well-formed envelope. */
  INVALID_ENVELOPE: 'INVALID_ENVELOPE',
  /** A configuration or declaration mistake, found at start-up. */
  INVALID_CONFIG: 'INVALID_CONFIG',
  /** The device database is corrupt or unreadable (it has been moved aside). */
  STORE_CORRUPT: 'STORE_CORRUPT',
  /** The device database cannot be used (newer schema, disk error, closed). */
  STORE_FAILED: 'STORE_FAILED',
  /** Another process holds a lock on the device database longer than the wait allows. */
  STORE_LOCKED: 'STORE_LOCKED',
  /** The device database is busy (another writer) right now; the operation may be tried again. */
  STORE_BUSY: 'STORE_BUSY',
  /** The device database or its folder cannot be written (read-only file or filesystem). */
  STORE_READ_ONLY: 'STORE_READ_ONLY',
  /** The disk holding the device database is full; what needs no new writes still works. */
  STORE_FULL: 'STORE_FULL',
  /** Another process already runs this device on the same database (its lock file is held). */
  STORE_IN_USE: 'STORE_IN_USE',
  /** A field that becomes an MQTT topic level is not a valid single level of bounded length. */
  INVALID_TOPIC_LEVEL: 'INVALID_TOPIC_LEVEL',
  /** The named thing (job, queue, device, file) does not exist. */
  NOT_FOUND: 'NOT_FOUND',
  /** A command-line argument or option is missing or has a value that is not accepted. */
  BAD_ARGUMENT: 'BAD_ARGUMENT',
  /** The service is known, but none of its instances could be reached just now. */
  SERVICE_UNREACHABLE: 'SERVICE_UNREACHABLE',
  /** The outbox stream is full and its policy is to refuse new messages. */
  OUTBOX_FULL: 'OUTBOX_FULL',
  /** A listening port is already taken by another process. */
  PORT_IN_USE: 'PORT_IN_USE',
  /** A job's lease ran out (its process died or froze) or the job was taken away; its result is ignored. */
  LEASE_LOST: 'LEASE_LOST',
  /** A worker asked for its job to be tried again later (`ctx.retry`). */
  JOB_RETRY: 'JOB_RETRY',
  /** A worker gave its job up (`ctx.fail`); the job is dead-lettered. */
  JOB_FAILED: 'JOB_FAILED',
  /** A device id that the gateway's device table already has. */
  DEVICE_EXISTS: 'DEVICE_EXISTS',
  /** A device id that the gateway's device table does not have (for a cloud command: or has revoked, so it cannot log in). */
  DEVICE_UNKNOWN: 'DEVICE_UNKNOWN',
  /** A client that did not prove who it is (unknown device, wrong secret, revoked, client id not its device id). */
  NOT_AUTHENTICATED: 'NOT_AUTHENTICATED',
  /** A publish or subscription outside what the client's device id and role allow. */
  NOT_AUTHORIZED: 'NOT_AUTHORIZED',
  /** A cloud target (NATS JetStream, RabbitMQ) cannot be reached now; what goes to it waits in the gateway. */
  TARGET_UNAVAILABLE: 'TARGET_UNAVAILABLE',
  /** A cloud target refused a message (or its setup) for good; the message is dead-lettered with the reason. */
  TARGET_REJECTED: 'TARGET_REJECTED',
  /** The device a command is for is not connected (and the caller asked not to wait for it). */
  DEVICE_OFFLINE: 'DEVICE_OFFLINE',
  /** The gateway holds as many cloud command calls as it may at once (`commands.maxPending`); try again later. */
  GATEWAY_BUSY: 'GATEWAY_BUSY',
  /** A device bundle's manifest signature does not verify with the key that names it. */
  BAD_SIGNATURE: 'BAD_SIGNATURE',
  /** A file of a device bundle is missing, extra, or not the size and sha256 its manifest gives. */
  HASH_MISMATCH: 'HASH_MISMATCH',
  /** A device bundle is signed by a key the device does not trust (or not signed at all). */
  UNKNOWN_KEY: 'UNKNOWN_KEY',
  /** A device bundle's native addon (or JavaScript) is for another Node ABI, platform or architecture. */
  ABI_MISMATCH: 'ABI_MISMATCH',
  /** A device bundle is larger than its size budget (minified or gzip). */
  BUDGET_EXCEEDED: 'BUDGET_EXCEEDED',
  /** A device bundle could not be built (its sources do not compile, an input is missing). */
  BUILD_FAILED: 'BUILD_FAILED',
} as const
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode]

const KNOWN_CODES = new Set<string>(Object.values(ErrorCode))

/** The only error shape that crosses the wire. */
export interface WireError {
  code: string
  message: string
  details?: unknown
}

/** One schema violation, as it travels: where, what was expected, what kind of value came (never the value). */
export interface ValidationIssue {
  path: string
  expected: string | null
  received: string
  message: string
}

/** Base error of everything Outpost throws; tell errors apart by `code`. */
export class OutpostError extends Error {
  // Literals, so that both names survive minification (device bundles rename classes, without
  // keepNames): `err.name`, and the class's own (what pino logs as the error's `type`, and what
  // util.inspect prints).
  static override readonly name: string = 'OutpostError'
  override name = 'OutpostError'
  readonly code: ErrorCode
  readonly details?: unknown
  readonly retryable: boolean

  constructor(
    code: ErrorCode,
    message: string,
    opts: ErrorOptions & { details?: unknown; retryable?: boolean } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause })
    this.code = code
    this.details = opts.details
    this.retryable = opts.retryable ?? false
  }
}

/** True when `err` is an OutpostError (optionally with the given code), minification-safe. */
export function isOutpostError(err: unknown, code?: ErrorCode): err is OutpostError {
  if (typeof err !== 'object' || err === null) return false
  try {
    return (err as { name?: unknown }).name === 'OutpostError' && (code === undefined || (err as { code?: unknown }).code === code)
  } catch {
    // A value whose properties throw when read (a Proxy, a getter) is no OutpostError.
    return false
  }
}

/** Turns any thrown value into the wire shape; anything that is not an OutpostError becomes INTERNAL. */
export function toWireError(err: unknown): WireError {
  if (isOutpostError(err)) {
    const wire: WireError = { code: err.code, message: err.message }
    if (err.details !== undefined) wire.details = err.details
    return wire
  }
  return { code: ErrorCode.INTERNAL, message: 'internal error' }
}

/** Rebuilds an OutpostError from its wire shape (unknown codes become INTERNAL). */
export function fromWireError(wire: WireError): OutpostError {
  const code = KNOWN_CODES.has(wire.code) ? (wire.code as ErrorCode) : ErrorCode.INTERNAL
  return new OutpostError(code, wire.message, { details: wire.details })
}

/**
 * The message of any thrown value, for logs and error texts: an Error's message, a string as
 * is, and something readable for anything else (a thrown `null`, `undefined`, a number or a
 * plain object), never a throw of its own.
 */
export function errorMessage(err: unknown): string {
  if (typeof err === 'string') return err
  if (err === null || err === undefined) return `thrown ${String(err)}`
  // A value whose every look throws (a Proxy, a getter) gets its type named, no more.
  try {
    if (err instanceof Error) return String(err.message)
    if (typeof err === 'object' && typeof (err as { message?: unknown }).message === 'string') return (err as { message: string }).message
    return `thrown ${typeof err}: ${String(err)}`.slice(0, 200)
  } catch {
    return `thrown ${typeof err}`
  }
}

/** The error code of any thrown value: an OutpostError's code, else INTERNAL. */
export function errorCode(err: unknown): ErrorCode {
  return isOutpostError(err) ? err.code : ErrorCode.INTERNAL
}
