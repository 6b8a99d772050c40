import { fillRandom } from '../lazy-builtin.js'

const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ' // Crockford base32: sorts like the numbers it encodes
const DIGIT = Array.from(ALPHABET, (c) => c.charCodeAt(0))
/** A character code's digit value; -1 for a code that is no digit. */
const VALUE = new Int8Array(128).fill(-1)
DIGIT.forEach((code, i) => (VALUE[code] = i))

/** Makes time-ordered message ids (ULID layout: 26 Crockford base32 characters). */
export interface MessageIdFactory {
  (): string
}

function base32(n: number, digits: number): string {
  let s = ''
  for (let i = 0; i < digits; i++) {
    s = ALPHABET[n % 32]! + s
    n = Math.floor(n / 32)
  }
  return s
}

/**
 * The lowest id a factory makes at `ms` or later: every id made before `ms` sorts below it.
 * (Ids are 26 characters; this 10-character prefix sorts below all ids that start with it.)
 */
export const idPrefix = (ms: number): string => base32(idTime(Math.ceil(ms)), 10)

/** The milliseconds an id can carry: 0 up to 32^10 - 1 (a time that is not a number counts as 0). */
export const idTime = (ms: number): number => (ms > 0 ? Math.min(Math.floor(ms), 32 ** 10 - 1) : 0)

/**
 * Creates a monotonic id factory. Layout: 10 characters of milliseconds, 8 of randomness
 * drawn once per factory (so two devices never collide), 8 of a counter. Ids sort by creation
 * time, and ids made in the same millisecond by one factory still sort in creation order.
 * Drawing 40 random bits per factory instead of 80 per id keeps an id at a few dozen
 * nanoseconds; uniqueness comes from the counter, not from chance.
 */
export function createMessageIdFactory(now: () => number = Date.now): MessageIdFactory {
  const rnd = Buffer.alloc(5)
  fillRandom(rnd)
  // The id is built from character codes in one go: a flat string, not a chain of
  // concatenations that every Map lookup by id would first have to flatten.
  const codes: number[] = new Array(26).fill(48)
  const put = (at: number, value: string): void => {
    for (let i = 0; i < value.length; i++) codes[at + i] = value.charCodeAt(i)
  }
  put(10, base32(rnd.readUIntBE(0, 5), 8))
  // The counter starts anywhere, so restarts within one millisecond stay apart.
  put(18, base32(Math.floor(Math.random() * 2 ** 20), 8))
  let lastMs = -1
  return () => {
    const ms = now()
    if (ms !== lastMs) {
      lastMs = ms
      put(0, base32(ms, 10))
    }
    // Odometer increment of the 8-digit base32 counter (wraps after 2^40 ids).
    for (let i = 25; i >= 18; i--) {
      const d = VALUE[codes[i]!]!
      if (d < 31) {
        codes[i] = DIGIT[d + 1]!
        break
      }
      codes[i] = DIGIT[0]!
    }
    return idOf(codes)
  }
}

/** The id spelled by 26 character codes. */
function idOf(c: number[]): string {
  // Spelled out: fromCharCode.apply with an array is several times slower than direct arguments.
  return String.fromCharCode(c[0]!, c[1]!, c[2]!, c[3]!, c[4]!, c[5]!, c[6]!, c[7]!, c[8]!, c[9]!, c[10]!, c[11]!, c[12]!, c[13]!, c[14]!, c[15]!, c[16]!, c[17]!, c[18]!, c[19]!, c[20]!, c[21]!, c[22]!, c[23]!, c[24]!, c[25]!)
}

/** Makes ids that carry a row number, and reads the number back. */
export interface NumberedIdFactory {
  /** The id of row `n` (0 up to 32^8 - 1), made at `ms`. */
  make(ms: number, n: number): string
  /** The row number an id of this layout carries (whichever factory made it); -1 if it is none. */
  numberOf(id: string): number
}

/**
 * Ids for rows a store numbers itself: the ULID layout of message ids, with the row number in
 * place of the counter (10 characters of milliseconds, 8 of randomness drawn once per factory,
 * 8 of the number). The store finds a row from its id by the number, with no index of ids;
 * ids of one factory sort by time, then number.
 */
export function createNumberedIdFactory(): NumberedIdFactory {
  const rnd = Buffer.alloc(5)
  fillRandom(rnd)
  const codes: number[] = new Array(26).fill(48)
  const tag = base32(rnd.readUIntBE(0, 5), 8)
  for (let i = 0; i < 8; i++) codes[10 + i] = tag.charCodeAt(i)
  let lastMs = -1
  return {
    make(ms, n) {
      if (ms !== lastMs) {
        lastMs = ms
        const t = base32(idTime(ms), 10)
        for (let i = 0; i < 10; i++) codes[i] = t.charCodeAt(i)
      }
      for (let i = 25; i >= 18; i--) {
        codes[i] = DIGIT[n % 32]!
        n = Math.floor(n / 32)
      }
      return idOf(codes)
    },
    numberOf(id) {
      if (id.length !== 26) return -1
      let n = 0
      for (let i = 18; i < 26; i++) {
        const code = id.charCodeAt(i)
        const d = code < 128 ? VALUE[code]! : -1
        if (d < 0) return -1
        n = n * 32 + d
      }
      return n
    },
  }
}

/** Reads the creation time (epoch ms) back out of a message id; NaN if it is not one. */
export function messageIdTime(id: string): number {
  if (id.length !== 26) return Number.NaN
  let t = 0
  for (let i = 0; i < 10; i++) {
    const d = ALPHABET.indexOf(id[i]!)
    if (d < 0) return Number.NaN
    t = t * 32 + d
  }
  return t
}
