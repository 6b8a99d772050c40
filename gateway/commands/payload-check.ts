// A cloud caller's payload checked against the JSON Schema the target device announced for the
// command (its contract document, gateway/registry/contracts.ts), with ajv, before anything is
// sent to the device. A refusal is VALIDATION_FAILED with `details.issues` in the shape a device
// answers with (runtime/service/validation.ts), and `details.checkedBy: 'gateway'`. The schemas
// come from devices: untrusted, so
//   - a schema ajv cannot compile (invalid, a reference it cannot resolve, another dialect) is
//     not used: the device checks the payload itself, as without a document;
//   - formats are not checked (valibot's and a format library's rules differ), string lengths
//     count UTF-16 code units, as valibot does;
//   - patterns are not checked: a device's regular expression never runs on the gateway (one
//     that backtracks badly on a caller's string would stall its event loop). ajv has no
//     `pattern` keyword here, and any other regular expression a schema needs
//     (`patternProperties`, wherever a `$ref` finds it) makes the schema unusable;
//   - `uniqueItems` is not checked: ajv compares every pair of items, and a caller's array of
//     some 30,000 items held the gateway for seconds;
//   - a schema that costs more than MAX_SCHEMA_NODES (objects and enum values, what a `$ref`
//     points to counted at each use: schema-cost.ts) is not used, nor a recursive one: compiling
//     and checking cost time in proportion, on the event loop (30 definitions that each name the
//     next twice, 2 KB of document, ran the gateway out of memory on one call). A `$ref` is
//     compiled once and called, never copied into each place (`inlineRefs: false`);
//   - compiled schemas are kept by their JSON text, at most `maxSchemas`, the oldest dropped
//     from ajv too, so devices announcing ever new schemas cannot grow the gateway.
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv'
import { ErrorCode, OutpostError, type ValidationIssue } from '../../runtime/errors.js'
import type { JsonSchema } from '../../runtime/wire/envelope.js'
import { schemaCost } from './schema-cost.js'

/** The dialect ajv's default class reads, the only one a document is checked in. */
const DIALECT = 'draft-07'
/**
 * What a schema may cost (schema-cost.ts: its objects and enum values, a `$ref`'s target counted
 * at each use) and still be used: ajv takes about 0.15 ms an object to compile on this machine,
 * and checking an array's items costs as much per item, all of it on the gateway's event loop.
 * A command's payload schema costs tens; a dearer one is left to the device.
 */
export const MAX_SCHEMA_NODES = 500
/** Issues reported at most, as a device reports them. */
const MAX_ISSUES = 20

export interface PayloadCheck {
  /**
   * Checks a payload against a schema in `dialect`; `what` names it in the error.
   * @throws VALIDATION_FAILED when the payload does not fit; nothing when it fits or the schema cannot be used
   */
  check(schema: JsonSchema, dialect: string, payload: unknown, what: string): void
  /** Compiled schemas kept now, and schemas found unusable since start. */
  stats(): { schemas: number; unusable: number }
}

interface Compiled {
  schema: JsonSchema
  validate: ValidateFunction | undefined
}

const kindOf = (value: unknown): string => {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'array'
  if (value instanceof Uint8Array) return 'bytes'
  return typeof value
}

/** An issue path as a device writes it (`a.b[0]`), from a JSON pointer into `data`; also the value there. */
function pathOf(pointer: string, data: unknown): { path: string; value: unknown } {
  let path = ''
  let value = data
  if (pointer === '') return { path, value }
  for (const raw of pointer.slice(1).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~')
    path += Array.isArray(value) ? `[${key}]` : path === '' ? key : `.${key}`
    value = typeof value === 'object' && value !== null ? (value as Record<string, unknown>)[key] : undefined
  }
  return { path, value }
}

const child = (path: string, key: string): string => (path === '' ? key : `${path}.${key}`)

/** What a failed keyword expected, in valibot's words where there are some. */
function expectedOf(e: ErrorObject): string | null {
  const p = e.params as Record<string, unknown>
  switch (e.keyword) {
    case 'type':
      return Array.isArray(p.type) ? p.type.join(' | ') : String(p.type)
    case 'const':
      return JSON.stringify(p.allowedValue) ?? null
    case 'enum':
      return `(${(p.allowedValues as unknown[]).map((x) => JSON.stringify(x)).join(' | ')})`
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
      return `${String(p.comparison)}${String(p.limit)}`
    case 'minLength':
    case 'minItems':
    case 'minProperties':
      return `>=${String(p.limit)}`
    case 'maxLength':
    case 'maxItems':
    case 'maxProperties':
      return `<=${String(p.limit)}`
    case 'multipleOf':
      return `%${String(p.multipleOf)}`
    default:
      return null
  }
}

/** ajv's errors as a device's issues. Errors inside the options of an `anyOf`/`oneOf` are left out: the option keyword's own error says it. */
export function issuesOf(errors: readonly ErrorObject[], data: unknown): ValidationIssue[] {
  const out: ValidationIssue[] = []
  for (const e of errors) {
    if (out.length >= MAX_ISSUES) break
    if (/\/(anyOf|oneOf)\/\d+\//.test(e.schemaPath)) continue
    let { path, value } = pathOf(e.instancePath, data)
    let expected = expectedOf(e)
    const p = e.params as Record<string, unknown>
    if (e.keyword === 'required') {
      path = child(path, String(p.missingProperty))
      value = undefined
      expected = `"${String(p.missingProperty)}"`
    } else if (e.keyword === 'additionalProperties') {
      path = child(path, String(p.additionalProperty))
      value = (value as Record<string, unknown>)[String(p.additionalProperty)]
      expected = 'never'
    }
    const received = kindOf(value)
    const where = path === '' ? 'value' : path
    out.push({ path, expected, received, message: expected === null ? `${where}: ${e.message ?? e.keyword}, received ${received}` : `${where}: expected ${expected}, received ${received}` })
  }
  return out
}

/**
 * ajv's engine for the regular expressions a schema needs: none is made. A schema that needs one
 * (`patternProperties`, anywhere a `$ref` leads) fails to compile and is not used; `pattern`,
 * the common case, is a keyword this ajv does not have (see createPayloadCheck).
 */
const noRegExp = Object.assign(
  (source: string): never => {
    throw new Error(`regular expressions from devices are not run on the gateway (${source.slice(0, 40)})`)
  },
  { code: 'noRegExp' },
)

/** Creates a checker with its own ajv instance and compiled-schema cache. */
export function createPayloadCheck(opts: { maxSchemas?: number } = {}): PayloadCheck {
  const maxSchemas = Math.max(1, opts.maxSchemas ?? 512)
  const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false, unicode: false, unicodeRegExp: false, addUsedSchema: false, logger: false, inlineRefs: false, code: { regExp: noRegExp } })
  // Left to the device, wherever they stand in a schema (strict: false makes them unknown words
  // that change nothing): a pattern, and uniqueItems, whose pairwise comparison a long array
  // makes quadratic.
  ajv.removeKeyword('pattern')
  ajv.removeKeyword('uniqueItems')
  // By JSON text, least recently used first.
  const cache = new Map<string, Compiled>()
  let unusable = 0

  const compiled = (schema: JsonSchema): ValidateFunction | undefined => {
    const text = JSON.stringify(schema)
    const hit = cache.get(text)
    if (hit !== undefined) {
      cache.delete(text)
      cache.set(text, hit)
      return hit.validate
    }
    // A copy of its own: ajv keys what it compiled by the object, which is dropped with it.
    const own = JSON.parse(text) as JsonSchema
    let validate: ValidateFunction | undefined
    try {
      validate = schemaCost(own, MAX_SCHEMA_NODES) === Infinity ? undefined : ajv.compile(own)
    } catch {
      validate = undefined
    }
    if (validate === undefined) unusable++
    cache.set(text, { schema: own, validate })
    if (cache.size > maxSchemas) {
      const [oldest, gone] = cache.entries().next().value!
      cache.delete(oldest)
      if (gone.validate !== undefined && typeof gone.schema === 'object') ajv.removeSchema(gone.schema)
    }
    return validate
  }

  return {
    check(schema, dialect, payload, what) {
      if (dialect !== DIALECT) return
      const validate = compiled(schema)
      if (validate === undefined) return
      let fits: boolean
      try {
        fits = validate(payload) as boolean
      } catch {
        // A payload nested deeper than the stack (a recursive schema): the device decides.
        return
      }
      if (fits) return
      const issues = issuesOf(validate.errors ?? [], payload)
      // `checkedBy`: the device never saw it.
      throw new OutpostError(ErrorCode.VALIDATION_FAILED, `${what} is invalid: ${issues.map((i) => i.message).join('; ')}`, { details: { issues, checkedBy: 'gateway' } })
    },
    stats: () => ({ schemas: cache.size, unusable }),
  }
}
