// The conversion behind a contract document: each valibot schema of a contract, reduced to what
// the device checks on the input as it arrives (see contract-document.ts for the rules), as JSON
// Schema by @valibot/to-json-schema. Loaded only when a document is built from the schemas
// themselves: from sources, and when bundling (build/contract-table.ts), which puts the result
// into the bundle so that a device does not carry the converter (about 17 KB minified).
import { toJsonSchema } from '@valibot/to-json-schema'
import * as v from 'valibot'
import type { AnyContract } from '../contract/contract.js'
import type { ContractService, JsonSchema } from '../wire/envelope.js'

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

/** The commands and events of `contract` as JSON Schema (what a contract document says of it). */
export function contractServiceOf(contract: AnyContract): ContractService {
  const convert = toJsonSchema as unknown as Convert
  const memo = new WeakMap<object, Node>()
  return {
    name: contract.name,
    version: contract.version,
    commands: Object.fromEntries(
      Object.entries(contract.commands).map(([name, spec]) => [name, { payload: jsonSchemaOf(convert, spec.payload, memo), result: jsonSchemaOf(convert, spec.result, memo) }]),
    ),
    events: Object.fromEntries(Object.entries(contract.events).map(([name, schema]) => [name, jsonSchemaOf(convert, schema, memo)])),
  }
}

/**
 * What a bundle carries instead of the converter: the part of a contract document for each of
 * `contracts`, by `<name>@<version>`, in key order (a bundle's bytes depend on its sources only).
 * Two different contracts under one key are both left out: a device then cannot tell which one
 * it serves from the table (see contract-document.ts for what it does instead).
 */
export function contractTable(contracts: readonly AnyContract[]): Record<string, ContractService> {
  const found = new Map<string, ContractService | null>()
  for (const contract of contracts) {
    const key = `${contract.name}@${contract.version}`
    const service = contractServiceOf(contract)
    const seen = found.get(key)
    if (seen === undefined) found.set(key, service)
    else if (seen !== null && JSON.stringify(seen) !== JSON.stringify(service)) found.set(key, null)
  }
  const table: Record<string, ContractService> = {}
  for (const key of [...found.keys()].sort()) {
    const service = found.get(key)
    if (service) table[key] = service
  }
  return table
}
