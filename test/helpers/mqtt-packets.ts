/** One whole MQTT packet cut from the front of a buffer: its first byte, its body, and the bytes after it. */
export interface RawPacket {
  first: number
  body: Buffer
  rest: Buffer
}

/**
 * Cuts the first whole MQTT packet off `buf` (fixed header, remaining length as a variable byte
 * integer, body), for test brokers written by hand; undefined while more bytes are needed.
 */
export function nextPacket(buf: Buffer): RawPacket | undefined {
  let length = 0
  let mult = 1
  let at = 1
  for (;;) {
    if (at >= buf.length) return undefined
    const b = buf[at++]!
    length += (b & 0x7f) * mult
    mult *= 128
    if ((b & 0x80) === 0) break
  }
  if (buf.length < at + length) return undefined
  return { first: buf[0]!, body: buf.subarray(at, at + length), rest: buf.subarray(at + length) }
}

/** MQTT's remaining length of `n` bytes: seven bits a byte, the high bit saying that more follow. */
export function remainingLength(n: number): Buffer {
  const out: number[] = []
  do {
    let b = n % 128
    n = Math.floor(n / 128)
    if (n > 0) b |= 0x80
    out.push(b)
  } while (n > 0)
  return Buffer.from(out)
}
