import * as v from 'valibot'
import type { Schema } from '../contract/contract.js'

/**
 * Fast acceptance for the plain schemas most payloads use. valibot runs a schema by walking
 * it, with a dataset object per value; for `object`, `array`, `string`, `number`, `boolean`,
 * `literal`, `picklist`, `optional` and `nullable` (without defaults, pipes or fallbacks) this module
 * generates one function that checks a valid input and builds the same output valibot would:
 * a new object with the declared keys in declaration order, unknown keys left out.
 *
 * The generated function only ever says yes. Whenever an input is not plainly valid it
 * answers `DEFER`, and the caller runs valibot, which produces the issues (or, for the
 * corner cases this function does not decide, the output). Schemas of any other kind are
 * never compiled: valibot runs them as before.
 *
 * One rule is stricter than valibot's: an object schema (`object`, `looseObject`,
 * `strictObject`, `objectWithRest`, `record`) accepts only a plain object (`isPlainObject`: its
 * constructor is `Object`, its prototype `Object.prototype`, or it has none). valibot 1.x takes anything of type `object`
 * there: arrays, Dates, Maps, typed arrays, class instances; an array payload passed a command's
 * object schema. The compiled path checks the constructor; after valibot accepts an input, a walk
 * of the schema beside the input looks for an object schema that met something else and reports
 * it as an issue. (Only local code could fool the check, by giving a Date or an array an own
 * `constructor` property that is `Object`; a decoded frame holds plain objects and arrays only.)
 */
export const DEFER: unique symbol = Symbol('defer')
type Accept = (input: unknown) => unknown

const compiled = new WeakMap<object, Accept | null>()

/** Parses like `v.safeParse`, taking the compiled path when the schema and input allow it. */
export function safeParse<S extends Schema>(schema: S, input: unknown): v.SafeParseResult<S> {
  const accept = acceptorOf(schema)
  if (accept !== null) {
    const output = accept(input)
    if (output !== DEFER) return { typed: true, success: true, output, issues: undefined } as v.SafeParseResult<S>
  }
  const r = v.safeParse(schema, input)
  if (!r.success) return r
  const issue = notPlain(schema as unknown as Node, input, [], 0)
  if (issue === undefined) return r
  return { typed: false, success: false, output: input, issues: [issue] } as unknown as v.SafeParseResult<S>
}

/**
 * Whether `x` is a plain object: made by a literal, JSON or a CBOR map (its constructor is
 * `Object`, or its prototype is `Object.prototype`), or without a prototype. The compiled path checks the constructor
 * only (a property read the inline cache makes free; `Object.getPrototypeOf` halved its speed).
 */
export function isPlainObject(x: unknown): x is Record<string, unknown> {
  if (x === null || typeof x !== 'object') return false
  if ((x as { constructor?: unknown }).constructor === Object) return true
  const proto: unknown = Object.getPrototypeOf(x)
  return proto === Object.prototype || proto === null // a `constructor` key of its own
}

const OBJECT_KINDS = new Set(['object', 'loose_object', 'strict_object', 'object_with_rest', 'record'])
const WRAPPERS = new Set(['optional', 'exact_optional', 'undefinedable', 'nullable', 'nullish', 'non_optional', 'non_nullable', 'non_nullish'])
interface PathItem { type: string; origin: 'value'; input: unknown; key: unknown; value: unknown }

/** The first place where an object schema accepted something that is not a plain object, as a valibot issue. */
function notPlain(node: Node, value: unknown, path: PathItem[], depth: number): v.BaseIssue<unknown> | undefined {
  if (depth > 64 || value === null || typeof value !== 'object') return undefined
  const at = (key: unknown, inner: unknown, type: string): PathItem[] => [...path, { type, origin: 'value', input: value, key, value: inner }]
  if (OBJECT_KINDS.has(node.type)) {
    if (!isPlainObject(value)) {
      // The built-in tag, never a getter of the value's own (`constructor` could be anything).
      const received = Object.prototype.toString.call(value).slice(8, -1)
      return {
        kind: 'schema', type: node.type, input: value, expected: 'Object', received: `"${received}"`,
        message: `Invalid type: Expected Object but received "${received}"`, path: path.length === 0 ? undefined : (path as never),
      } as v.BaseIssue<unknown>
    }
    if (node.type === 'record') {
      for (const key of Object.keys(value)) {
        const found = notPlain(node.value!, value[key], at(key, value[key], 'object'), depth + 1)
        if (found !== undefined) return found
      }
      return undefined
    }
    const entries = node.entries ?? {}
    for (const key in entries) {
      if (!(key in value)) continue
      const found = notPlain(entries[key]!, value[key], at(key, value[key], 'object'), depth + 1)
      if (found !== undefined) return found
    }
    if (node.type === 'object_with_rest') {
      for (const key of Object.keys(value)) {
        if (key in entries) continue
        const found = notPlain(node.rest!, value[key], at(key, value[key], 'object'), depth + 1)
        if (found !== undefined) return found
      }
    }
    return undefined
  }
  if (WRAPPERS.has(node.type)) return notPlain(node.wrapped!, value, path, depth + 1)
  if (Array.isArray(value)) {
    if (node.type === 'array') {
      for (let i = 0; i < value.length; i++) {
        const found = notPlain(node.item!, value[i], at(i, value[i], 'array'), depth + 1)
        if (found !== undefined) return found
      }
      return undefined
    }
    if (node.type === 'tuple' || node.type === 'loose_tuple' || node.type === 'strict_tuple' || node.type === 'tuple_with_rest') {
      const items = node.items ?? []
      for (let i = 0; i < value.length; i++) {
        const item = i < items.length ? items[i] : node.type === 'tuple_with_rest' ? node.rest : undefined
        if (item === undefined) continue
        const found = notPlain(item, value[i], at(i, value[i], 'array'), depth + 1)
        if (found !== undefined) return found
      }
      return undefined
    }
  }
  if (node.type === 'union' || node.type === 'variant') {
    // valibot takes the first option that accepts the input (its output is that option's): if
    // that option is an object schema meeting something else, the input is refused, even where
    // a later option would have taken it (put `v.array` before `v.object` in such a union).
    for (const option of (node.options as Node[] | undefined) ?? []) {
      if (v.is(option as never, value)) return notPlain(option, value, path, depth + 1)
    }
    return undefined
  }
  if (node.type === 'intersect') {
    for (const option of (node.options as Node[] | undefined) ?? []) {
      const found = notPlain(option, value, path, depth + 1)
      if (found !== undefined) return found
    }
    return undefined
  }
  if (node.type === 'lazy' && node.getter !== undefined) return notPlain(node.getter(value), value, path, depth + 1)
  return undefined
}

interface Node {
  type: string; reference?: unknown; async?: boolean; pipe?: unknown; fallback?: unknown; default?: unknown
  literal?: unknown; options?: unknown; wrapped?: Node; item?: Node; entries?: Record<string, Node>
  items?: Node[]; rest?: Node; value?: Node; getter?: (input: unknown) => Node
}

/** Whether a schema is one of the kinds compiled here, with nothing attached that changes values. */
function plain(node: Node, kind: (...args: never[]) => unknown): boolean {
  return node.reference === kind && node.async === false && node.pipe === undefined && node.fallback === undefined
}

function compile(schema: Schema): Accept | null {
  const helpers: Accept[] = []
  const body = check(schema as unknown as Node, 'x', helpers, 0)
  if (body === null) return null
  return generate(`return function accept(x) { ${body.code} return ${body.out} }`, helpers)
}

/** Makes a function from generated code; null where code generation is disabled (valibot runs then). */
function generate(source: string, helpers: Accept[]): Accept | null {
  try {
    // eslint-disable-next-line @typescript-eslint/no-implied-eval
    const make = new Function('D', 'h', 'P', source) as (d: symbol, h: Accept[], p: ObjectConstructor) => Accept
    return make(DEFER, helpers, Object)
  } catch {
    return null
  }
}

/** Code that checks the value in `at` (returning D when it is not plainly valid) and the expression of its output. */
function check(node: Node, at: string, helpers: Accept[], depth: number): { code: string; out: string } | null {
  if (depth > 16) return null
  if (plain(node, v.string)) return { code: `if (typeof ${at} !== 'string') return D;`, out: at }
  if (plain(node, v.number)) return { code: `if (typeof ${at} !== 'number' || ${at} !== ${at}) return D;`, out: at }
  if (plain(node, v.boolean)) return { code: `if (typeof ${at} !== 'boolean') return D;`, out: at }
  if (plain(node, v.literal)) {
    const literal = node.literal
    const ok = typeof literal === 'string' || typeof literal === 'boolean' || (typeof literal === 'number' && Number.isFinite(literal))
    return ok ? { code: `if (${at} !== ${JSON.stringify(literal)}) return D;`, out: at } : null
  }
  if (plain(node, v.picklist)) {
    const options = node.options
    const simple = (o: unknown) => typeof o === 'string' || (typeof o === 'number' && Number.isFinite(o))
    if (!Array.isArray(options) || options.length === 0 || options.length > 32 || !options.every(simple)) return null
    return { code: `if (${options.map((o) => `${at} !== ${JSON.stringify(o)}`).join(' && ')}) return D;`, out: at }
  }
  if (plain(node, v.nullable) && node.default === undefined) {
    const inner = sub(node.wrapped!, helpers, depth)
    return inner === null ? null : { code: `const ${at}_ = ${at} === null ? null : h[${inner}](${at}); if (${at}_ === D) return D;`, out: `${at}_` }
  }
  if (plain(node, v.array)) {
    const item = sub(node.item!, helpers, depth)
    if (item === null) return null
    const code = `if (!Array.isArray(${at})) return D; const ${at}_ = new Array(${at}.length);` +
      `for (let i = 0; i < ${at}.length; i++) { const e = h[${item}](${at}[i]); if (e === D) return D; ${at}_[i] = e }`
    return { code, out: `${at}_` }
  }
  if (plain(node, v.object)) {
    const entries = node.entries!
    // A plain object only (see the module comment): arrays, Dates, Maps, class instances, objects
    // without a prototype and objects with a `constructor` key go to valibot and the walk.
    let code = `if (!${at} || typeof ${at} !== 'object' || ${at}.constructor !== P) return D;`
    const fields: { k: string; out: string; optional: boolean }[] = []
    let i = 0
    // for…in, as valibot walks the entries: the output keys come out in the same order.
    for (const key in entries) {
      if (key === '__proto__') return null
      const entry = entries[key]!
      const name = `${at}_${i++}`
      const k = JSON.stringify(key)
      if (plain(entry, v.optional)) {
        if (entry.default !== undefined) return null
        const inner = sub(entry.wrapped!, helpers, depth)
        if (inner === null) return null
        // Absent: no key in the output. Present but undefined: the key, undefined (as valibot).
        code += `const ${name} = ${at}[${k}]; let ${name}_ = D;` +
          `if (${name} !== undefined) { ${name}_ = h[${inner}](${name}); if (${name}_ === D) return D }` +
          `else if (${k} in ${at}) ${name}_ = undefined;`
        fields.push({ k, out: `${name}_`, optional: true })
        continue
      }
      const inner = check(entry, name, helpers, depth + 1)
      if (inner === null) return null
      code += `const ${name} = ${at}[${k}]; ${inner.code}`
      fields.push({ k, out: inner.out, optional: false })
    }
    if (!fields.some((f) => f.optional)) return { code, out: `{ ${fields.map((f) => `${f.k}: ${f.out}`).join(', ')} }` }
    // With optional keys the output is built key by key, as valibot does.
    code += `const ${at}_o = {};`
    for (const f of fields) code += f.optional ? `if (${f.out} !== D) ${at}_o[${f.k}] = ${f.out};` : `${at}_o[${f.k}] = ${f.out};`
    return { code, out: `${at}_o` }
  }
  return null
}

/** Compiles a nested schema into its own helper; answers its index, or null if not compiled. */
function sub(node: Node, helpers: Accept[], depth: number): number | null {
  const body = check(node, 'y', helpers, depth + 1)
  if (body === null) return null
  const helper = generate(`return function (y) { ${body.code} return ${body.out} }`, helpers)
  if (helper === null) return null
  helpers.push(helper)
  return helpers.length - 1
}

/** Whether `safeParse` takes the compiled path for this schema (for tests and diagnostics). */
export function isCompiled(schema: Schema): boolean {
  return acceptorOf(schema) !== null
}

function acceptorOf(schema: Schema): Accept | null {
  let accept = compiled.get(schema)
  if (accept === undefined) {
    accept = compile(schema)
    compiled.set(schema, accept)
  }
  return accept
}
