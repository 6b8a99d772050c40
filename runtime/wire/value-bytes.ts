import { Encoder } from 'cbor-x'
import { createCborWriter, UNWRITTEN } from './cbor-writer.js'

/**
 * The CBOR bytes of one value, as a frame's payload or a stored job's payload is written (a
 * copy the caller may keep): for rare paths, such as sizing a dead letter. Its writer is made
 * per call, so it shares no buffer with any codec (a hot path uses a codec of its own).
 * @throws what cbor-x throws for a value it cannot encode
 */
export function valueBytes(value: unknown): Uint8Array {
  const v = value === undefined ? null : value
  // As the envelope codec writes payloads: plain CBOR first, cbor-x for the rest.
  const written = createCborWriter().write(v)
  if (written !== UNWRITTEN) return Uint8Array.prototype.slice.call(written)
  return new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false }).encode(v)
}
