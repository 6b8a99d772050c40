import { randomFillSync } from 'node:crypto'

const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ' // Crockford base32: sorts like the numbers it encodes
const RANDOM_CHARS = 16 // 80 random bits

/** Makes time-ordered message ids (ULID layout: 10 chars of milliseconds, 16 of randomness). */
export interface MessageIdFactory {
  (): string
}

/**
 * Creates a monotonic id factory: ids sort by creation time, and ids made in the same
 * millisecond still sort in creation order (the random part is incremented, as ULID specifies).
 */
export function createMessageIdFactory(now: () => number = Date.now): MessageIdFactory {
  const pool = Buffer.alloc(4096)
  let poolAt = pool.length
  let lastMs = -1
  let lastTime = ''
  const rand = new Uint8Array(RANDOM_CHARS) // one base32 digit per byte

  const refill = (): void => {
    for (let i = 0; i < RANDOM_CHARS; i++) {
      if (poolAt >= pool.length) {
        randomFillSync(pool)
        poolAt = 0
      }
      rand[i] = pool[poolAt++]! & 31
    }
  }

  const increment = (): void => {
    for (let i = RANDOM_CHARS - 1; i >= 0; i--) {
      if (rand[i]! < 31) {
        rand[i]!++
        return
      }
      rand[i] = 0
    }
    refill() // 80 bits exhausted within one millisecond: start over with fresh randomness
  }

  return () => {
    const ms = now()
    if (ms > lastMs) {
      lastMs = ms
      let t = ms
      let s = ''
      for (let i = 0; i < 10; i++) {
        s = ALPHABET[t % 32]! + s
        t = Math.floor(t / 32)
      }
      lastTime = s
      refill()
    } else {
      increment()
    }
    let r = ''
    for (let i = 0; i < RANDOM_CHARS; i++) r += ALPHABET[rand[i]!]
    return lastTime + r
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
