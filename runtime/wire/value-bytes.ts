import { Encoder } from 'cbor-x'
import { UNWRITTEN, writePlainCbor } from './cbor-writer.js'

// As the envelope codec writes payloads: plain CBOR first, cbor-x for the rest.
const encoder = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false })

/**
 * The CBOR bytes of one value, as a frame's payload or a stored job's payload is written (a
 * copy the caller may keep). @throws what cbor-x throws for a value it cannot encode
 */
export function valueBytes(value: unknown): Uint8Array {
  const written = writePlainCbor(value === undefined ? null : value)
  if (written !== UNWRITTEN) return Uint8Array.prototype.slice.call(written)
  return encoder.encode(value === undefined ? null : value)
}
