import { randomFillSync } from 'node:crypto'

const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ' // Crockford base32: sorts like the numbers it encodes

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
 * Creates a monotonic id factory. Layout: 10 characters of milliseconds, 8 of randomness
 * drawn once per factory (so two devices never collide), 8 of a counter. Ids sort by creation
 * time, and ids made in the same millisecond by one factory still sort in creation order.
 * Drawing 40 random bits per factory instead of 80 per id keeps an id at a few dozen
 * nanoseconds; uniqueness comes from the counter, not from chance.
 */
// Two base32 digits per entry: a counter's 40 bits become four lookups.
const PAIRS: string[] = Array.from({ length: 1024 }, (_, i) => ALPHABET[i >> 5]! + ALPHABET[i & 31]!)

export function createMessageIdFactory(now: () => number = Date.now): MessageIdFactory {
  const rnd = Buffer.alloc(5)
  randomFillSync(rnd)
  const instance = base32(rnd.readUIntBE(0, 5), 8)
  let counter = Math.floor(Math.random() * 2 ** 20) // start anywhere: restarts within one ms stay apart
  let lastMs = -1
  let prefix = ''
  return () => {
    const ms = now()
    if (ms !== lastMs) {
      lastMs = ms
      prefix = base32(ms, 10) + instance
    }
    counter = counter + 1 === 2 ** 40 ? 0 : counter + 1
    const hi = Math.floor(counter / 1_048_576) // upper 20 bits
    const lo = counter % 1_048_576
    return prefix + PAIRS[hi >> 10]! + PAIRS[hi & 1023]! + PAIRS[lo >> 10]! + PAIRS[lo & 1023]!
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
