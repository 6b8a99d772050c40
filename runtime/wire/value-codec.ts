import { Decoder, Encoder } from 'cbor-x'
import { ErrorCode, OutpostError } from '../errors.js'
import { createCborReader, UNREAD } from './cbor-reader.js'
import { createCborWriter, UNWRITTEN } from './cbor-writer.js'

/**
 * Turns one stored value (a job's payload, output or progress, a state entry) into CBOR bytes
 * and back: the one codec the SQLite stores share, so what they store is written and read the
 * same way everywhere, and cbor-x stays inside `runtime/wire/`.
 */
export interface ValueCodec {
  /**
   * The CBOR bytes of `value` (`undefined` is written as CBOR undefined). The bytes are a view
   * into a buffer the codec reuses for later values without overwriting these; a caller that
   * keeps them for long should keep a copy (a store that binds them to a statement need not).
   * @throws INTERNAL for a value that cannot be written (a function, a symbol, a cycle, a getter
   * that throws: its error is the cause, and its message stays out of the error's own, which a
   * remote caller may read)
   */
  encode(value: unknown): Uint8Array
  /** The value stored as `bytes`. @throws STORE_FAILED for bytes that are not CBOR (the cause says why) */
  decode(bytes: Uint8Array): unknown
}

/**
 * Creates a value codec, with buffers and caches of its own (one per store). Plain data
 * (numbers, strings, booleans, null, arrays, plain objects) is written and read by the fast
 * plain-CBOR writer and reader; anything else goes to cbor-x.
 *
 * The on-disk format is fixed by what databases already hold: cbor-x without its record
 * extension, maps read as objects, typed arrays tagged, 8-byte integers read as BigInts (the
 * configuration both stores had before they shared this codec). Rows written before read back
 * exactly as they did. The plain writer differs from cbor-x's bytes only in writing a map's size
 * in its shortest form, which any CBOR reader (cbor-x of any version among them) reads the same.
 */
export function createValueCodec(): ValueCodec {
  // Do not change these options: stored rows were written with them and must keep reading.
  const encoder = new Encoder({ useRecords: false, mapsAsObjects: true })
  const decoder = new Decoder({ useRecords: false, mapsAsObjects: true })
  const writer = createCborWriter()
  const reader = createCborReader()
  return {
    encode(value: unknown): Uint8Array {
      const written = writer.write(value)
      if (written !== UNWRITTEN) return written
      try {
        return encoder.encode(value)
      } catch (cause) {
        throw new OutpostError(ErrorCode.INTERNAL, 'value cannot be stored as CBOR (plain data only: no functions, symbols or cycles)', { cause })
      }
    },
    decode(bytes: Uint8Array): unknown {
      const read = reader.read(bytes)
      if (read !== UNREAD) return read
      try {
        return decoder.decode(bytes)
      } catch (cause) {
        throw new OutpostError(ErrorCode.STORE_FAILED, 'a stored value is not readable CBOR', { cause })
      }
    },
  }
}
