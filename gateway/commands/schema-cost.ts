// What checking a payload against a schema a device announced may cost the gateway, counted
// before ajv sees the schema (payload-check.ts leaves a schema over the bound to the device).
// Objects count, and so does each value of an `enum` (ajv compares a value with each in turn).
// A `$ref` counts what it points to, each time it is used: checking follows every reference, so
// `d0 = {allOf: [{$ref: d1}, {$ref: d1}]}, d1 = …` costs 2^n for n definitions of a few objects
// each (30 of them, 2 KB of document, ran the gateway out of memory on one call). A reference that
// leads back to itself (a recursive schema) is left to the device whatever its size: how often
// it is followed depends on the payload's depth. So is one that cannot be followed here (not a
// JSON pointer into the schema itself).

/** Cost at which the count stops: `schemaCost` answers `Infinity` past it. */
export function schemaCost(schema: unknown, max: number): number {
  const done = new Map<string, number>()
  const open = new Set<string>()

  /** The value `pointer` (`#/definitions/x`) names in the schema; undefined when there is none. */
  const resolve = (pointer: string): unknown => {
    if (pointer === '#') return schema
    if (!pointer.startsWith('#/')) return undefined
    let at: unknown = schema
    for (const raw of pointer.slice(2).split('/')) {
      let key: string
      try {
        key = decodeURIComponent(raw).replace(/~1/g, '/').replace(/~0/g, '~')
      } catch {
        return undefined
      }
      if (typeof at !== 'object' || at === null || !Object.hasOwn(at, key)) return undefined
      at = (at as Record<string, unknown>)[key]
    }
    return at
  }

  /** The cost of `v`, or Infinity (past `max`, recursive, or a reference it cannot follow). */
  const cost = (v: unknown): number => {
    if (typeof v !== 'object' || v === null) return 0
    if (Array.isArray(v)) {
      let sum = 0
      for (const x of v) {
        sum += cost(x)
        if (sum > max) return Infinity
      }
      return sum
    }
    let sum = 1
    for (const [k, x] of Object.entries(v)) {
      if (k === '$ref') {
        sum += typeof x === 'string' ? refCost(x) : Infinity
      } else if (k === 'enum' && Array.isArray(x)) {
        sum += x.length + cost(x)
      } else sum += cost(x)
      if (sum > max) return Infinity
    }
    return sum
  }

  const refCost = (pointer: string): number => {
    const known = done.get(pointer)
    if (known !== undefined) return known
    if (open.has(pointer)) return Infinity
    const target = resolve(pointer)
    if (target === undefined) return Infinity
    open.add(pointer)
    const c = cost(target)
    open.delete(pointer)
    done.set(pointer, c)
    return c
  }

  const total = cost(schema)
  return total > max ? Infinity : total
}
