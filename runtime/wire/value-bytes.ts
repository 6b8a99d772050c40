import { Encoder } from 'cbor-x'
import { ErrorCode, OutpostError } from '../errors.js'
import { createCborWriter, UNWRITTEN } from './cbor-writer.js'

/**
 * The CBOR bytes of one value, as a frame's payload or a stored job's payload is written (a
 * copy the caller may keep): for rare paths, such as sizing a dead letter. Its writer is made
 * per call, so it shares no buffer with any codec (a hot path uses a codec of its own).
 * @throws INTERNAL for a value that cannot be written (the cause says why)
 */
export function valueBytes(value: unknown): Uint8Array {
  const v = value === undefined ? null : value
  // As the envelope codec writes payloads: plain CBOR first, cbor-x for the rest.
  const written = createCborWriter().write(v)
  if (written !== UNWRITTEN) return Uint8Array.prototype.slice.call(written)
  try {
    return new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false }).encode(v)
  } catch (cause) {
    throw new OutpostError(ErrorCode.INTERNAL, 'value cannot be written as CBOR (plain data only: no functions, symbols or cycles)', { cause })
  }
}
