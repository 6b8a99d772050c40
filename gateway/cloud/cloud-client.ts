// For cloud services on NATS: typed calls to device commands through a gateway's NATS command
// front end (gateway/commands/nats-commands.ts), with the contract the device implements, and
// the events the gateway forwarded to a JetStream stream read back as typed values.
//
//   const devices = createCloudClient({ nats: nc })
//   const thermo = devices.client(thermoContract, { device: 'thermo-1' })
//   const reading = await thermo.read({})            // typed as the contract says
import type { Msg, MsgHdrs, NatsConnection } from '@nats-io/nats-core'
import { headers as natsHeaders } from '@nats-io/nats-core'
import * as v from 'valibot'
import type { AnyContract } from '../../runtime/contract/contract.js'
import type { ContractClient, InvokeOptions, InvokeTarget } from '../../runtime/contract/service.js'
import { ErrorCode, fromWireError, OutpostError, type WireError } from '../../runtime/errors.js'
import { createEnvelopeCodec } from '../../runtime/wire/codec.js'

export interface CloudClientOptions {
  /** A connection to the NATS the gateway's command front end listens on. */
  nats: NatsConnection
  /** The gateway's `commands.nats.subject` (default `outpost.cmd`). */
  subject?: string
  /** Deadline of a call that names none, ms (default 10 000). */
  timeoutMs?: number
}

/** Where and how a call goes: a device (none: any live device that runs the command), the offline policy. */
export interface CloudCallOptions {
  device?: string
  offline?: 'fail' | 'hold'
}

export interface CloudClient {
  /** Typed calls to a contract's commands on the devices behind the gateway. Results are checked against the contract. */
  client<K extends AnyContract>(contract: K, o?: CloudCallOptions): ContractClient<K>
  /** An untyped call. @throws the device's error (VALIDATION_FAILED, …) or the gateway's (DEVICE_OFFLINE, NO_HANDLER, NOT_AUTHORIZED, …) */
  invoke(target: InvokeTarget, payload: unknown, o?: InvokeOptions & Omit<CloudCallOptions, 'device'>): Promise<unknown>
}

const textDecoder = new TextDecoder()

/** Creates a client over `opts.nats`. */
export function createCloudClient(opts: CloudClientOptions): CloudClient {
  const prefix = opts.subject ?? 'outpost.cmd'
  const defaultTimeout = opts.timeoutMs ?? 10_000
  const invoke = async (target: InvokeTarget, payload: unknown, o: InvokeOptions & Omit<CloudCallOptions, 'device'> = {}): Promise<unknown> => {
    const timeoutMs = o.timeoutMs ?? defaultTimeout
    const h = natsHeaders()
    h.set('Outpost-Timeout-Ms', String(timeoutMs))
    // The gateway counts the deadline from here: a request held up on the way does not run late.
    h.set('Outpost-Sent-At', String(Date.now()))
    if (o.offline !== undefined) h.set('Outpost-Offline', o.offline)
    if (o.traceparent !== undefined) h.set('traceparent', o.traceparent)
    const subject = `${prefix}.${o.device ?? '_'}.${target.service}.${target.version ?? '1'}.${target.command}`
    let reply: Msg
    try {
      // A little longer than the gateway's own deadline, so its TIMEOUT reply comes first.
      reply = await opts.nats.request(subject, JSON.stringify(payload ?? {}), { timeout: timeoutMs + 1_000, headers: h })
    } catch (err) {
      const code = (err as { code?: string; name?: string }).code ?? (err as { name?: string }).name ?? ''
      if (/503|NoResponders|no responders/i.test(`${code} ${(err as Error).message}`)) {
        throw new OutpostError(ErrorCode.SERVICE_UNREACHABLE, `no gateway answers on ${prefix}.> (is its commands.nats front end configured?)`, { retryable: true, cause: err })
      }
      if (/timeout/i.test(`${code} ${(err as Error).message}`)) throw new OutpostError(ErrorCode.TIMEOUT, `no answer to ${target.service}.${target.command} within ${timeoutMs} ms`, { retryable: true, cause: err })
      throw new OutpostError(ErrorCode.BRIDGE_UNAVAILABLE, `NATS request failed: ${(err as Error).message}`, { retryable: true, cause: err })
    }
    let doc: { result?: unknown; error?: WireError }
    try {
      doc = JSON.parse(textDecoder.decode(reply.data)) as typeof doc
    } catch (err) {
      throw new OutpostError(ErrorCode.INVALID_ENVELOPE, `the gateway's answer on ${subject} is not JSON`, { cause: err })
    }
    if (doc.error !== undefined) throw fromWireError(doc.error)
    return doc.result
  }
  return {
    invoke,
    client(contract, o = {}) {
      const client: Record<string, unknown> = {}
      for (const [command, spec] of Object.entries(contract.commands)) {
        const result = (spec as { result: v.GenericSchema }).result
        client[command] = async (payload: unknown, io: InvokeOptions = {}) => {
          const device = io.device ?? o.device
          const value = await invoke({ service: contract.name, version: contract.version, command }, payload, { ...io, ...(device === undefined ? {} : { device }), ...(o.offline === undefined ? {} : { offline: o.offline }) } as InvokeOptions)
          // JSON carries no byte strings or undefined: the result is checked as the contract says, as a device's caller would.
          const checked = v.safeParse(result, value)
          if (!checked.success) throw new OutpostError(ErrorCode.VALIDATION_FAILED, `the result of ${contract.name}.${command} does not match the contract`, { details: checked.issues.map((i) => ({ path: (i.path ?? []).map((p) => String(p.key)).join('.'), message: i.message })) })
          return checked.output
        }
      }
      return client as ContractClient<typeof contract>
    },
  }
}

/** An event as the gateway forwarded it (either encoding). */
export interface ForwardedEvent {
  id: string
  device: string
  /** The device process that sent it (a device id can be run by a new process after a restart). */
  instance: string
  service: string
  version: string
  event: string
  at: number
  traceparent?: string
  payload: unknown
}

const FORWARDED_TEXT_FIELDS = ['id', 'device', 'instance', 'service', 'version', 'event'] as const

/** The JSON form checked field by field. @throws MALFORMED_FRAME (not JSON), INVALID_ENVELOPE (a field missing or of the wrong type) */
function readJsonForwarded(body: Uint8Array): ForwardedEvent {
  let doc: unknown
  try {
    doc = JSON.parse(textDecoder.decode(body))
  } catch (err) {
    throw new OutpostError(ErrorCode.MALFORMED_FRAME, `a forwarded JSON body is not JSON: ${(err as Error).message.slice(0, 200)}`, { cause: err })
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new OutpostError(ErrorCode.INVALID_ENVELOPE, 'a forwarded JSON body is not an object')
  const o = doc as Record<string, unknown>
  for (const f of FORWARDED_TEXT_FIELDS) {
    if (typeof o[f] !== 'string' || o[f] === '') throw new OutpostError(ErrorCode.INVALID_ENVELOPE, `a forwarded JSON body has no ${f} (or it is not text)`)
  }
  if (typeof o.at !== 'number' || !Number.isFinite(o.at)) throw new OutpostError(ErrorCode.INVALID_ENVELOPE, 'a forwarded JSON body has no at (or it is not a number)')
  if (o.traceparent !== undefined && typeof o.traceparent !== 'string') throw new OutpostError(ErrorCode.INVALID_ENVELOPE, 'a forwarded JSON body has a traceparent that is not text')
  const e = o as Record<(typeof FORWARDED_TEXT_FIELDS)[number], string> & { at: number; traceparent?: string }
  return { id: e.id, device: e.device, instance: e.instance, service: e.service, version: e.version, event: e.event, at: e.at, ...(e.traceparent === undefined ? {} : { traceparent: e.traceparent }), payload: o.payload }
}

// Forwarded events are as large as the gateway's broker took them (1 MiB by default, more when configured).
const codec = createEnvelopeCodec({ maxFrameBytes: 64 * 1024 * 1024 })

/**
 * Reads a message the gateway forwarded (a JetStream or RabbitMQ message body and its headers):
 * `application/cbor` is the device's envelope frame, `application/json` the gateway's JSON form.
 * @throws MALFORMED_FRAME, INVALID_ENVELOPE for a body that is neither
 */
export function readForwarded(body: Uint8Array, headers?: MsgHdrs | Record<string, unknown>): ForwardedEvent {
  const type = headers === undefined ? undefined : 'get' in headers && typeof headers.get === 'function' ? (headers as MsgHdrs).get('Content-Type') : String((headers as Record<string, unknown>)['Content-Type'] ?? (headers as Record<string, unknown>)['content-type'] ?? '')
  if (type === 'application/json' || (type !== 'application/cbor' && body[0] === 0x7b)) return readJsonForwarded(body)
  const d = codec.decode(body)
  if (!d.ok) throw d.error
  const e = d.envelope
  if (e.kind !== 'event') throw new OutpostError(ErrorCode.INVALID_ENVELOPE, `a forwarded message is an event, not a ${e.kind}`)
  return { id: e.id, device: e.src, instance: e.inst, service: e.service!, version: e.version!, event: e.name!, at: e.at, ...(e.traceparent === undefined ? {} : { traceparent: e.traceparent }), payload: e.payload }
}
