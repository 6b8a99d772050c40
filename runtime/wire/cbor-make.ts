/**
 * How the plain-CBOR reader (`cbor-reader.ts`) makes strings and objects: pure functions, and
 * functions generated once per string length or per key sequence. Nothing here holds anything
 * of a frame, so all readers share it; each reader keeps its own caches of what it has read.
 */

const fromCharCode = String.fromCharCode

/** The `n` bytes of `s` at `start`, known to be ASCII, as a string. */
export function asciiString(s: Uint8Array, start: number, n: number): string {
  switch (n) {
    case 1: return fromCharCode(s[start]!)
    case 2: return fromCharCode(s[start]!, s[start + 1]!)
    case 3: return fromCharCode(s[start]!, s[start + 1]!, s[start + 2]!)
    case 4: return fromCharCode(s[start]!, s[start + 1]!, s[start + 2]!, s[start + 3]!)
    default: {
      const make = asciiMaker(n)
      return make !== null ? make(s, start) : sliceUtf8(s, start, n)
    }
  }
}

/**
 * Longest ASCII string made by one generated fromCharCode call with a fixed number of arguments
 * per length, which V8 makes without a copy through an argument array and without crossing
 * into C++ (fromCharCode.apply and Node's UTF-8 slice both cost more).
 */
export const ASCII_MAKER_MAX = 64
const asciiMakers: (((s: Uint8Array, a: number) => string) | null | undefined)[] = new Array(ASCII_MAKER_MAX + 1)
function asciiMaker(n: number): ((s: Uint8Array, a: number) => string) | null {
  let make = asciiMakers[n]
  if (make === undefined) {
    const args = Array.from({ length: n }, (_, i) => `s[a + ${i}]`).join(', ')
    try {
      // eslint-disable-next-line @typescript-eslint/no-implied-eval
      make = new Function('s', 'a', `return String.fromCharCode(${args})`) as (s: Uint8Array, a: number) => string
    } catch {
      make = null // code generation disabled: Node's UTF-8 slice
    }
    asciiMakers[n] = make
  }
  return make
}

const utf8 = new TextDecoder()
const nodeUtf8Slice = (globalThis as { Buffer?: { prototype: { utf8Slice?: (start: number, end: number) => string } } }).Buffer?.prototype.utf8Slice

/**
 * The `n` bytes of `s` at `start` as UTF-8: Node's own UTF-8 slice where there is one (faster
 * than TextDecoder on short strings); both turn invalid sequences into U+FFFD, as cbor-x does.
 */
export function sliceUtf8(s: Uint8Array, start: number, n: number): string {
  return nodeUtf8Slice !== undefined ? nodeUtf8Slice.call(s, start, start + n) : utf8.decode(s.subarray(start, start + n))
}

/** A function that builds an object with these keys, in this order, from `v[b]`, `v[b + 1]`, …; undefined where code generation is disallowed. */
export function compileShape(shapeKeys: string[]): ((values: unknown[], base: number) => object) | undefined {
  // Keys are quoted with JSON.stringify, so no key can change the generated code; `__proto__`
  // never gets here (it would set the prototype inside a literal).
  const fields = shapeKeys.map((k, i) => `${JSON.stringify(k)}: v[b + ${i}]`).join(', ')
  try {
    // eslint-disable-next-line @typescript-eslint/no-implied-eval
    return new Function('v', 'b', `return { ${fields} }`) as (values: unknown[], base: number) => object
  } catch {
    // Code generation disabled (node --disallow-code-generation-from-strings): objects are
    // built key by key, as for shapes seen only once.
    return undefined
  }
}
