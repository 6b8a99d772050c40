import type { Duplex } from 'node:stream'
import { varIntBytes, writeVarInt } from './var-int.js'

/** What the guard saw when a packet was larger than allowed. */
export interface OversizedPacket {
  /** MQTT packet type (3: PUBLISH). */
  type: number
  /** Remaining length of the packet as its fixed header announced it, bytes. */
  bytes: number
  /** The packet's topic (PUBLISH only, when the guard read it). */
  topic?: string
}

/** Options of a packet size guard. */
export interface PacketSizeGuardOptions {
  /** Largest remaining length (everything after the fixed header) a packet may announce, bytes. */
  maxPacketBytes: number
  /**
   * `close`: a larger packet closes the connection (a broker facing a client).
   * `shrink`: a larger PUBLISH is handed on as a PUBLISH of the same topic, flags and packet id
   * whose payload is `marker`, its bytes skipped as they arrive, so the client acknowledges it
   * as usual (the broker does not deliver it again) and its receiver drops it as too large; any
   * other larger packet closes the connection (a client facing a broker).
   */
  mode: 'close' | 'shrink'
  /** Payload that stands in for a PUBLISH that was too large (mode `shrink`). */
  marker?: Uint8Array
  /** MQTT protocol level of the connection (5 adds properties to a PUBLISH). */
  protocolVersion?: number
  /** Told of every packet that was too large, before the connection is closed or the packet shrunk. */
  onOversized?(packet: OversizedPacket): void
  /**
   * Offered every PUBACK read (its packet id, and its reason code: 0 unless MQTT 5 gives one):
   * returning true consumes it (it is not handed on), false hands it on unchanged. Lets the
   * transport's own publishes (direct-publisher.ts) take their acknowledgements without the
   * client library parsing them.
   */
  onPuback?(id: number, reasonCode: number): boolean
}

// Where the guard is in the packet being read.
const HEADER = 0 // expecting a packet's first byte
const LENGTH = 1 // reading the remaining length (1 to 4 bytes)
const PASS = 2 // inside a packet of allowed size: its bytes go on
const COLLECT = 3 // reading an oversized PUBLISH's variable header (topic, packet id, properties)
const SKIP = 4 // discarding the rest of an oversized PUBLISH
const BROKEN = 5 // framing lost (a malformed length) or connection closed: bytes go on, the parser decides
const ACK = 6 // reading a PUBACK's packet id (and MQTT 5 reason code), held back until it is known whose it is
const EMPTY = Buffer.alloc(0)
/** Most bytes of an oversized PUBLISH's variable header the guard reads (a topic is at most 65,535 bytes). */
const MAX_VARIABLE_HEADER = 65_535 + 2 + 2 + 4 + 65_536

/**
 * Bounds the size of the MQTT packets read from a socket while they are read: neither MQTT.js
 * nor mqtt-packet (v9) nor aedes has a limit of their own for MQTT 3.1.1 (MQTT.js checks the
 * MQTT 5 maximumPacketSize only once a packet was buffered whole), so one 64 MiB PUBLISH would
 * be held in memory before anyone could refuse it. The guard follows the packet framing (fixed
 * header and remaining length) of the bytes the socket pushes to its readers, which costs a
 * few operations per packet, not per byte, and passes each chunk on untouched unless a packet
 * is too large. It sits in the socket's own `push`, so no stream is added in between.
 */
export function guardPacketSize(socket: Duplex, opts: PacketSizeGuardOptions): void {
  const limit = opts.maxPacketBytes
  const shrink = opts.mode === 'shrink'
  const v5 = opts.protocolVersion === 5
  const marker = opts.marker ?? new Uint8Array(0)
  const onPuback = opts.onPuback
  const push = socket.push.bind(socket)

  let phase = HEADER
  let first = 0 // first byte of the current packet
  let length = 0 // its remaining length
  let multiplier = 1
  let lengthBytes = 0
  let carry: Buffer | undefined // bytes of a fixed header begun in an earlier chunk, not yet handed on
  let remaining = 0 // bytes of the current packet still to pass or skip
  let collected: Buffer = EMPTY // the variable header of an oversized PUBLISH, as read so far
  let have = 0
  let ackId = 0 // the PUBACK being read: its packet id and reason code so far
  let ackCode = 0
  let ackRead = 0 // bytes of it read
  let ackNeed = 0 // bytes of it needed to know whose it is

  const closeNow = (packet: OversizedPacket): void => {
    phase = BROKEN
    try {
      opts.onOversized?.(packet)
    } finally {
      socket.destroy()
    }
  }

  /** Length of the variable header of the PUBLISH collected so far, or -1 while more bytes are needed; -2 when it is too long to read. */
  const variableHeaderLength = (b: Buffer): number => {
    if (b.length < 2) return -1
    let n = 2 + b.readUInt16BE(0) + ((first >> 1) & 3 ? 2 : 0)
    if (!v5) return n
    // MQTT 5: a variable byte integer (the properties' length), then the properties.
    let props = 0
    let mult = 1
    for (let k = 0; k < 4; k++) {
      if (b.length <= n + k) return -1
      const byte = b[n + k]!
      props += (byte & 0x7f) * mult
      mult *= 128
      if ((byte & 0x80) === 0) {
        n += k + 1 + props
        return n > MAX_VARIABLE_HEADER ? -2 : n
      }
    }
    return -2
  }

  /** The PUBLISH that stands in for an oversized one: same first byte, variable header as received, `marker` as payload. */
  const standIn = (variableHeader: Buffer): Buffer => {
    const rest = variableHeader.length + marker.length
    const head: number[] = [first]
    let x = rest
    do {
      let byte = x % 128
      x = Math.floor(x / 128)
      if (x > 0) byte |= 0x80
      head.push(byte)
    } while (x > 0)
    return Buffer.concat([Buffer.from(head), variableHeader, marker])
  }

  /** The first bytes of a PUBACK held back: fixed header, packet id and (when read) reason code. */
  const ackHead = (len: number, id: number, code: number, read: number): Buffer => {
    const b = Buffer.allocUnsafe(1 + varIntBytes(len) + read)
    b[0] = 0x40
    const o = writeVarInt(b, 1, len)
    b.writeUInt16BE(id, o)
    if (read === 3) b[o + 2] = code
    return b
  }

  // What a chunk becomes when it is not handed on whole (made once, not per chunk).
  let pieces: Buffer[] | undefined
  const emit = (b: Buffer): void => {
    ;(pieces ??= []).push(b)
  }

  const feed = (chunk: Buffer): Buffer[] | undefined => {
    const n = chunk.length
    pieces = undefined
    let passFrom = 0 // first byte of this chunk that is to be handed on and has not been yet
    let headerAt = 0 // where the current fixed header began in this chunk (0 if in an earlier one)
    let i = 0
    while (i < n) {
      switch (phase) {
        case PASS: {
          const take = Math.min(remaining, n - i)
          i += take
          remaining -= take
          if (remaining === 0) phase = HEADER
          break
        }
        case HEADER:
          first = chunk[i]!
          headerAt = i++
          length = 0
          multiplier = 1
          lengthBytes = 0
          phase = LENGTH
          break
        case LENGTH: {
          const byte = chunk[i++]!
          length += (byte & 0x7f) * multiplier
          multiplier *= 128
          lengthBytes++
          if (byte & 0x80) {
            if (lengthBytes === 4) {
              // A remaining length that never ends: framing is lost, and a peer that sends a
              // malformed packet gets its connection closed (MQTT 3.1.1 §4.8, 5 §4.13). Were the
              // bytes passed on instead, MQTT.js would resynchronise somewhere, and PUBACKs this
              // guard no longer reads would leave the direct publishes waiting for ever.
              if (headerAt > passFrom) emit(chunk.subarray(passFrom, headerAt))
              phase = BROKEN
              carry = undefined
              socket.destroy()
              return pieces ?? []
            }
            break
          }
          if (length <= limit && first === 0x40 && onPuback !== undefined && (length === 2 || (v5 && length > 2))) {
            // A PUBACK: held back (with what came before it handed on) until its id is read.
            if (headerAt > passFrom) emit(chunk.subarray(passFrom, headerAt))
            carry = undefined
            passFrom = i
            ackId = 0
            ackCode = 0
            ackRead = 0
            ackNeed = length === 2 ? 2 : 3
            phase = ACK
            break
          }
          if (length <= limit) {
            if (carry !== undefined) {
              // The header began in the last chunk: its first bytes go on before this chunk's.
              emit(carry)
              carry = undefined
            }
            remaining = length
            phase = length === 0 ? HEADER : PASS
            break
          }
          // Too large. What came before its header goes on; the header itself does not.
          if (headerAt > passFrom) emit(chunk.subarray(passFrom, headerAt))
          carry = undefined
          passFrom = i
          const type = first >> 4
          if (!shrink || type !== 3) {
            closeNow({ type, bytes: length })
            return [] // the connection is gone: nothing more is handed on
          }
          collected = EMPTY
          have = 0
          phase = COLLECT
          break
        }
        case COLLECT: {
          // The variable header is read a piece at a time: the topic length, then the topic and
          // packet id (and in MQTT 5 the properties' length, then the properties).
          const known = variableHeaderLength(collected)
          const need = known === -1 ? have + 1 : known
          const take = Math.min(need - have, n - i)
          const piece = chunk.subarray(i, i + take)
          collected = have === 0 ? Buffer.from(piece) : Buffer.concat([collected, piece])
          have += take
          i += take
          passFrom = i
          const done = variableHeaderLength(collected)
          if (done === -2 || done > length) {
            closeNow({ type: 3, bytes: length })
            return []
          }
          if (done >= 0 && done <= have) {
            const topic = collected.toString('utf8', 2, 2 + collected.readUInt16BE(0))
            try {
              opts.onOversized?.({ type: 3, bytes: length, topic })
            } catch {
              // A failing listener must not stop the guard.
            }
            emit(standIn(collected))
            collected = EMPTY
            remaining = length - have
            have = 0
            phase = remaining === 0 ? HEADER : SKIP
          }
          break
        }
        case SKIP: {
          const take = Math.min(remaining, n - i)
          i += take
          remaining -= take
          passFrom = i
          if (remaining === 0) phase = HEADER
          break
        }
        case ACK: {
          const byte = chunk[i++]!
          passFrom = i
          if (ackRead++ < 2) ackId = (ackId << 8) | byte
          else ackCode = byte
          if (ackRead < ackNeed) break
          remaining = length - ackNeed
          if (onPuback!(ackId, ackCode)) {
            phase = remaining === 0 ? HEADER : SKIP
            break
          }
          // Not one it knows: handed on as it came (its fixed header written again, then what was read).
          emit(ackHead(length, ackId, ackCode, ackNeed))
          phase = remaining === 0 ? HEADER : PASS
          break
        }
        default: // BROKEN
          i = n
      }
    }
    if (phase === LENGTH) {
      // A fixed header cut by the chunk's end: held back until its length is known.
      if (headerAt > passFrom) emit(chunk.subarray(passFrom, headerAt))
      const tail = chunk.subarray(Math.max(headerAt, passFrom))
      carry = carry === undefined ? Buffer.from(tail) : Buffer.concat([carry, tail])
      return pieces ?? []
    }
    if (pieces === undefined && passFrom === 0) return undefined // the whole chunk goes on as it is
    if (passFrom < n) emit(chunk.subarray(passFrom))
    return pieces ?? []
  }

  socket.push = (chunk: unknown, encoding?: BufferEncoding): boolean => {
    if (chunk === null || phase === BROKEN || !Buffer.isBuffer(chunk)) return push(chunk, encoding)
    const pieces = feed(chunk)
    if (pieces === undefined) return push(chunk)
    let more = true
    for (const piece of pieces) if (piece.length > 0) more = push(piece)
    // After a close nothing more is read; otherwise ask for more (a skipped chunk pushed nothing).
    return socket.destroyed ? false : more
  }
}
