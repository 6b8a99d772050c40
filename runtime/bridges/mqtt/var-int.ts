/** Bytes an MQTT variable byte integer (a remaining length) takes for `n` (1 to 4). */
export function varIntBytes(n: number): number {
  return n < 128 ? 1 : n < 16_384 ? 2 : n < 2_097_152 ? 3 : 4
}

/** Writes `n` as an MQTT variable byte integer into `b` at `at`; returns the offset after it. */
export function writeVarInt(b: Buffer, at: number, n: number): number {
  let o = at
  let x = n
  do {
    const byte = x % 128
    x = Math.floor(x / 128)
    b[o++] = x > 0 ? byte | 0x80 : byte
  } while (x > 0)
  return o
}
