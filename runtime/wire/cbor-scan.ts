/**
 * A check of untrusted CBOR before cbor-x reads it. cbor-x gives meaning to much more than
 * data: tag 28/29 (value sharing) builds shared and cyclic objects, tag 27 calls constructors
 * (`RegExp`, `Error`), tags 2/3 turn a byte string into a BigInt (quadratic in its length),
 * records, bundled strings and packed values rewrite what later bytes mean, tags 258/259 make
 * Sets and Maps, tags 0/1 Dates, tags 64–87 typed arrays. None of that belongs in an envelope,
 * whose payload is JSON-like data, so a frame with any tag or unassigned simple value is
 * refused before cbor-x sees it, and so is nesting deeper than a fixed limit (cbor-x reads
 * recursively). What passes decodes to numbers, strings, byte strings, booleans, null,
 * undefined, arrays and plain objects: acyclic, as JSON.
 *
 * The walk is iterative and allocates nothing unless it refuses; it only runs for frames the
 * plain reader (`cbor-reader.ts`) left to cbor-x, never on the common path.
 */

/** Deepest nesting of arrays and maps a frame may have (the envelope array is level 1). */
export const MAX_CBOR_DEPTH = 64

/** Why a frame was refused: `malformed` (not well-formed, or nested too deep) or `unsupported` (a tag or simple value envelopes never carry). */
export interface CborScanProblem {
  kind: 'malformed' | 'unsupported'
  message: string
}

const INDEFINITE = -1

/** Checks that `bytes` is one well-formed CBOR item of plain data; undefined when it is. Never throws. */
export type PlainCborScan = (bytes: Uint8Array) => CborScanProblem | undefined

/** Creates a scan with a scratch array of its own (one per codec). */
export function createPlainCborScan(): PlainCborScan {
  // Items still to come in each open array or map (a map counts keys and values), or INDEFINITE.
  const left = new Array<number>(MAX_CBOR_DEPTH + 1).fill(0)
  return (bytes) => scanPlainCbor(bytes, left)
}

function scanPlainCbor(bytes: Uint8Array, left: number[]): CborScanProblem | undefined {
  const end = bytes.length
  let pos = 0
  let depth = 0
  left[0] = 1 // the top level holds one item
  while (depth >= 0) {
    if (left[depth] === 0) {
      depth--
      continue
    }
    if (pos >= end) return malformed('frame ends inside a CBOR item')
    const head = bytes[pos++]!
    if (head === 0xff) {
      if (left[depth] !== INDEFINITE || depth === 0) return malformed('CBOR break outside an indefinite-length item')
      depth--
      continue
    }
    if (left[depth] !== INDEFINITE) left[depth]!--
    const major = head >> 5
    const info = head & 0x1f
    let arg: number
    if (info < 24) arg = info
    else if (info === 24) {
      if (pos + 1 > end) return malformed('frame ends inside a CBOR head')
      arg = bytes[pos]!
      pos += 1
    } else if (info === 25) {
      if (pos + 2 > end) return malformed('frame ends inside a CBOR head')
      arg = (bytes[pos]! << 8) | bytes[pos + 1]!
      pos += 2
    } else if (info === 26) {
      if (pos + 4 > end) return malformed('frame ends inside a CBOR head')
      arg = bytes[pos]! * 0x1000000 + ((bytes[pos + 1]! << 16) | (bytes[pos + 2]! << 8) | bytes[pos + 3]!)
      pos += 4
    } else if (info === 27) {
      if (pos + 8 > end) return malformed('frame ends inside a CBOR head')
      // Only the size matters here: anything past 2^32 is larger than any frame.
      const high = bytes[pos]! | bytes[pos + 1]! | bytes[pos + 2]! | bytes[pos + 3]!
      arg = high !== 0 ? Infinity : bytes[pos + 4]! * 0x1000000 + ((bytes[pos + 5]! << 16) | (bytes[pos + 6]! << 8) | bytes[pos + 7]!)
      pos += 8
    } else if (info === 31) arg = INDEFINITE
    else return malformed(`reserved CBOR additional information ${info}`)
    switch (major) {
      case 0:
      case 1:
        if (arg === INDEFINITE) return malformed('an integer cannot have an indefinite length')
        break
      case 2:
      case 3:
        // cbor-x reads no chunked strings; an envelope never has one.
        if (arg === INDEFINITE) return malformed('indefinite-length strings are not read')
        if (arg > end - pos) return malformed('a CBOR string runs past the end of the frame')
        pos += arg
        break
      case 4:
      case 5: {
        if (depth + 1 > MAX_CBOR_DEPTH) return malformed(`CBOR nested deeper than ${MAX_CBOR_DEPTH} levels`)
        let items = arg
        if (arg !== INDEFINITE) {
          items = major === 5 ? 2 * arg : arg
          if (items > end - pos) return malformed('a CBOR array or map is longer than the frame')
        }
        left[++depth] = items
        break
      }
      case 6:
        return { kind: 'unsupported', message: `frame uses CBOR tag ${arg === Infinity ? '(64-bit)' : arg}; envelopes carry plain data only` }
      case 7:
        // false, true, null, undefined; half, single and double floats (their bytes were skipped above).
        if ((info >= 20 && info <= 23) || (info >= 25 && info <= 27)) break
        if (info === 31) return malformed('CBOR break outside an indefinite-length item')
        return { kind: 'unsupported', message: `frame uses CBOR simple value ${arg}; envelopes carry plain data only` }
    }
  }
  if (pos !== end) return malformed('bytes after the end of the CBOR item')
  return undefined
}

function malformed(message: string): CborScanProblem {
  return { kind: 'malformed', message }
}
