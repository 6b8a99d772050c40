// The contract document a runtime announces: for every service it serves, the JSON Schema of each
// command's payload and result and of each event's payload, converted from the valibot schemas
// with @valibot/to-json-schema, published retained on `<prefix>/<device>/contract` (kind
// `contract`, runtime/wire/README.md). A gateway checks cloud callers' payloads against it.
//
// The document must never refuse what the device takes. The converter leaves a part it cannot
// express open (its `errorMode: 'ignore'`), and before it runs, each schema is reduced to what
// the device checks on the input as it arrives:
// - a pipe stops at its first transformation (`trim`, `toLowerCase`, `transform`, …) or second
//   schema: what follows checks a changed value, not the caller's;
// - `fallback` takes any input (a failing one becomes the fallback value): left open;
// - a `regex` with flags (JSON Schema patterns have none) is dropped;
// - `variant` becomes `anyOf`, not the converter's `oneOf` (two options may both match);
// - defaults are left out (the converter would call a default function), and so are `examples`
//   and metadata beyond title and description (metadata keys land in the schema as keywords).
// The converter (about 13 KB minified) is imported when the first document is built, after the
// runtime has started, and only by a runtime that serves a command or an event.
import * as v from 'valibot'
import type { ServiceDefinition } from '../contract/service.js'
import { errorMessage, ErrorCode, isOutpostError } from '../errors.js'
import { CONTRACT_VERSION, ENVELOPE_VERSION, MAX_CONTRACT_BYTES, type ContractPayload, type ContractService, type JsonSchema } from '../wire/envelope.js'
import type { RuntimeCore } from './runtime-core.js'

/** The JSON Schema dialect of every schema in a document. */
export const CONTRACT_DIALECT = 'draft-07'

/** A valibot schema or pipe item, as far as the reduction below reads it. */
interface Node {
  kind?: string
  type?: string
  pipe?: Node[]
  wrapped?: Node
  entries?: Record<string, Node>
  rest?: Node
  item?: Node
  items?: Node[]
  key?: unknown
  value?: unknown
  options?: unknown[]
  getter?: (input: unknown) => Node
  default?: unknown
  requirement?: unknown
  metadata?: Record<string, unknown>
}

// Takes anything, and may be missing from an object (as a key with a fallback may).
const OPEN = v.optional(v.unknown()) as unknown as Node

const isSchema = (x: unknown): x is Node => typeof x === 'object' && x !== null && (x as Node).kind === 'schema'
const flatten = (pipe: Node[]): Node[] => pipe.flatMap((item) => (Array.isArray(item.pipe) ? flatten(item.pipe) : [item]))

/** The schema the converter is given for `schema`: what the device checks on the input as it arrives (see the top of this file). */
function inputSchemaOf(schema: Node, memo: WeakMap<object, Node>): Node {
  const known = memo.get(schema)
  if (known !== undefined) return known
  if ('fallback' in schema) return OPEN
  if (Array.isArray(schema.pipe)) {
    const [first, ...rest] = flatten(schema.pipe)
    const kept: Node[] = [isSchema(first) ? inputSchemaOf(first, memo) : OPEN]
    for (const item of rest) {
      if (item.kind === 'schema' || item.kind === 'transformation') break
      if (item.type === 'regex' && item.requirement instanceof RegExp && item.requirement.flags !== '') continue
      if (item.type === 'examples') continue
      if (item.type === 'metadata') {
        const { title, description } = item.metadata ?? {}
        kept.push({ ...item, metadata: { ...(typeof title === 'string' ? { title } : {}), ...(typeof description === 'string' ? { description } : {}) } })
        continue
      }
      kept.push(item)
    }
    const out = { ...schema, pipe: kept }
    memo.set(schema, out)
    return out
  }
  const out: Node = { ...schema }
  // Before the parts: a lazy schema that contains itself finds this one.
  memo.set(schema, out)
  const part = (x: unknown): unknown => (isSchema(x) ? inputSchemaOf(x, memo) : x)
  if ('default' in schema) out.default = undefined
  if (schema.type === 'variant') out.type = 'union'
  if (isSchema(schema.wrapped)) out.wrapped = inputSchemaOf(schema.wrapped, memo)
  if (schema.entries !== undefined) out.entries = Object.fromEntries(Object.entries(schema.entries).map(([k, s]) => [k, part(s) as Node]))
  for (const field of ['rest', 'item', 'key', 'value'] as const) if (isSchema(schema[field])) (out as Record<string, unknown>)[field] = part(schema[field])
  if (Array.isArray(schema.items)) out.items = schema.items.map((s) => part(s) as Node)
  if (Array.isArray(schema.options) && schema.options.every(isSchema)) out.options = schema.options.map(part)
  const getter = schema.getter
  if (typeof getter === 'function') out.getter = (input) => inputSchemaOf(getter(input), memo)
  return out
}

type Convert = (schema: never, config: { errorMode: 'ignore'; typeMode: 'input' }) => Record<string, unknown>

/** One schema as plain JSON data (no `$schema`: the document names the dialect once); open when conversion fails. */
function jsonSchemaOf(convert: Convert, schema: unknown, memo: WeakMap<object, Node>): JsonSchema {
  try {
    if (!isSchema(schema)) return {}
    const { $schema: _dialect, ...out } = convert(inputSchemaOf(schema, memo) as never, { errorMode: 'ignore', typeMode: 'input' })
    // JSON data only: a Date or BigInt in a title or a constant must not stop the frame from being encoded.
    return JSON.parse(JSON.stringify(out, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x))) as JsonSchema
  } catch {
    return {}
  }
}

/** The services a runtime serves that have a command or an event; a document names only these. */
const served = (defs: readonly ServiceDefinition[]): ServiceDefinition[] =>
  defs.filter((d) => Object.keys(d.contract.commands).length > 0 || Object.keys(d.contract.events).length > 0)

/**
 * Builds the contract document of these services, and its size as JSON (about its size as CBOR,
 * a little more). Undefined when none of them has a command or an event: nothing to announce.
 */
export async function buildContractDocument(defs: readonly ServiceDefinition[]): Promise<{ document: ContractPayload; bytes: number } | undefined> {
  const services = served(defs)
  if (services.length === 0) return undefined
  const { toJsonSchema } = await import('@valibot/to-json-schema')
  const convert = toJsonSchema as unknown as Convert
  const memo = new WeakMap<object, Node>()
  const out: ContractService[] = services.map(({ contract }) => ({
    name: contract.name,
    version: contract.version,
    commands: Object.fromEntries(
      Object.entries(contract.commands).map(([name, spec]) => [name, { payload: jsonSchemaOf(convert, spec.payload, memo), result: jsonSchemaOf(convert, spec.result, memo) }]),
    ),
    events: Object.fromEntries(Object.entries(contract.events).map(([name, schema]) => [name, jsonSchemaOf(convert, schema, memo)])),
  }))
  const document: ContractPayload = { v: CONTRACT_VERSION, dialect: CONTRACT_DIALECT, services: out }
  return { document, bytes: Buffer.byteLength(JSON.stringify(document)) }
}

/** Publishes a runtime's contract document: built once, sent after connecting (see `connected`). */
export interface ContractAnnouncer {
  /**
   * The link is connected. The document goes out the first time, then again only on a connection
   * without a session (`sessionPresent` false): that broker may have lost its retained messages.
   * Built and sent on a later turn, never on the way to `start` resolving.
   */
  connected(sessionPresent: boolean): void
}

/** Failed publishes after which a run stops announcing its document. */
const MAX_FAILURES = 3

/**
 * Creates the announcer of one runtime. A document that cannot be built or is larger than
 * MAX_CONTRACT_BYTES is not announced (logged once); after MAX_FAILURES failed publishes no
 * more are tried in this run: a broker that closes the connection on it (a gateway that does not
 * know the contract topic) must not get it again at every reconnect. The transport keeps no copy
 * to send again either (`callerResends`). Without a document a gateway leaves payloads to the device.
 */
export function createContractAnnouncer(core: RuntimeCore): ContractAnnouncer {
  let built: ReturnType<typeof buildContractDocument> | undefined
  let sent = false
  let busy = false
  let stopped = false
  let failures = 0

  const send = async (): Promise<void> => {
    built ??= buildContractDocument([...core.hosted.values()].map((h) => h.def))
    const made = await built
    // Nothing served: nothing to announce, now or later.
    if (made === undefined) return void (stopped = true)
    if (core.stopping) return
    if (made.bytes > MAX_CONTRACT_BYTES) {
      stopped = true
      core.log.warn({ bytes: made.bytes, limit: MAX_CONTRACT_BYTES }, 'contract document too large; not announced (a gateway leaves payload checks to this device)')
      return
    }
    await core.link.publish(
      { v: ENVELOPE_VERSION, kind: 'contract', id: core.ids(), src: core.deviceId, inst: core.inst, at: core.now(), payload: made.document },
      { retain: true, callerResends: true },
    )
    sent = true
  }

  return {
    connected(sessionPresent) {
      if (stopped || busy || core.stopping || (sent && sessionPresent)) return
      busy = true
      setImmediate(() => {
        send()
          .catch((err: unknown) => {
            if (core.stopping || isOutpostError(err, ErrorCode.BRIDGE_CLOSED)) return
            // Built, but not sent: tried again at the next connection, a few times.
            if (++failures >= MAX_FAILURES || !isOutpostError(err, ErrorCode.BRIDGE_UNAVAILABLE)) stopped = true
            core.log.warn({ err: errorMessage(err), failures, retry: !stopped }, stopped ? 'contract document not announced; not tried again in this run' : 'contract document not announced; tried again at the next connection')
          })
          .finally(() => (busy = false))
      })
    },
  }
}
