'use strict'
// Stands in for safe-stable-stringify in device bundles. pino calls it only for a log object that
// JSON.stringify refused (a cycle, a BigInt), with pino's depth and breadth limits and nothing
// else, so that is what is kept: the same text safe-stable-stringify writes for such an object
// with its default options (keys sorted, a cycle as "[Circular]", a BigInt as a number, what lies
// deeper than the depth limit as "[Object]"/"[Array]", what lies past the breadth limit counted)
// and no replacer, no indentation, no other option. test/build/device-stubs.test.ts compares the
// two on the objects pino gets.

const quote = (s) => JSON.stringify(s)
const counted = (n) => (n === 1 ? '1 item' : `${n} items`)
const typedTag = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(Int8Array.prototype), Symbol.toStringTag).get

function configure (options = {}) {
  const depth = options.maximumDepth ?? Infinity
  const breadth = options.maximumBreadth ?? Infinity

  // `seen` holds the objects being written, outermost first: one met again inside itself is a cycle.
  const write = (key, value, seen) => {
    if (value !== null && typeof value === 'object' && typeof value.toJSON === 'function') value = value.toJSON(key)
    switch (typeof value) {
      case 'string': return quote(value)
      case 'number': return Number.isFinite(value) ? String(value) : 'null'
      case 'boolean': return value ? 'true' : 'false'
      case 'bigint': return String(value)
      case 'object': break
      default: return undefined
    }
    if (value === null) return 'null'
    if (seen.includes(value)) return '"[Circular]"'
    if (Array.isArray(value)) {
      if (value.length === 0) return '[]'
      if (seen.length >= depth) return '"[Array]"'
      seen.push(value)
      const shown = Math.min(value.length, breadth)
      const items = []
      for (let i = 0; i < shown; i++) items.push(write(String(i), value[i], seen) ?? 'null')
      // Counted as safe-stable-stringify counts them: one fewer than left out.
      if (value.length - 1 > breadth) items.push(`"... ${counted(value.length - breadth - 1)} not stringified"`)
      seen.pop()
      return `[${items.join(',')}]`
    }
    let keys = Object.keys(value)
    const total = keys.length
    if (total === 0) return '{}'
    if (seen.length >= depth) return '"[Object]"'
    const parts = []
    let room = Math.min(total, breadth)
    if (value.length !== undefined && typedTag.call(value) !== undefined && value.length !== 0) {
      const n = Math.min(value.length, breadth)
      for (let i = 0; i < n; i++) parts.push(`"${i}":${value[i]}`)
      keys = keys.slice(value.length)
      room -= value.length
    }
    keys.sort()
    seen.push(value)
    for (let i = 0; i < room; i++) {
      const text = write(keys[i], value[keys[i]], seen)
      if (text !== undefined) parts.push(`${quote(keys[i])}:${text}`)
    }
    if (total > breadth) parts.push(`"...":"${counted(total - breadth)} not stringified"`)
    seen.pop()
    return `{${parts.join(',')}}`
  }

  return (value) => write('', value, [])
}

const stringify = configure()
module.exports = stringify
module.exports.configure = configure
module.exports.stringify = stringify
module.exports.default = stringify
