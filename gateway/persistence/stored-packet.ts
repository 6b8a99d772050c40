import { createRequire } from 'node:module'

// Packets as aedes hands them to the persistence, and as broker.db holds them: two columns, the
// fields as JSON and the payload as bytes.

// aedes-packet is CommonJS without type declarations; only the part used here is typed.
const require = createRequire(import.meta.url)
const Packet = require('aedes-packet') as new (original: object, broker?: object) => StoredPacket

/** A packet as aedes hands it to the persistence (an aedes-packet, or a plain object for wills and retained messages). */
export interface StoredPacket {
  cmd?: string
  topic: string
  payload: Buffer | Uint8Array | string
  qos?: number
  retain?: boolean
  dup?: boolean
  messageId?: number
  brokerId?: string
  brokerCounter?: number
  clientId?: string
  properties?: Record<string, unknown>
  messageExpiry?: number
  [field: string]: unknown
}

/** A copy of `packet` as an aedes-packet (the constructor clears the packet id: set it again if it is needed). */
export const asPacket = (packet: object): StoredPacket => new Packet(packet)

// A Buffer inside a packet (MQTT 5 correlation data, say) is written as { "\u0000b": base64 }:
// MQTT strings may not hold U+0000, so no property of a client's can take that shape.
const BUF = '\u0000b'
function replacer(this: Record<string, unknown>, key: string, value: unknown): unknown {
  const raw = this[key]
  if (raw instanceof Uint8Array) return { [BUF]: Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64') }
  return value
}
const reviver = (_key: string, value: unknown): unknown => {
  if (value !== null && typeof value === 'object' && typeof (value as Record<string, unknown>)[BUF] === 'string') {
    return Buffer.from((value as Record<string, string>)[BUF]!, 'base64')
  }
  return value
}

/** A packet as two columns: its fields (JSON, Buffers included) and its payload bytes. */
export function encodePacket(packet: StoredPacket): [string, Buffer] {
  const { payload, ...meta } = packet
  const bytes = typeof payload === 'string' ? Buffer.from(payload) : payload instanceof Uint8Array ? Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength) : Buffer.alloc(0)
  // Only MQTT 5 properties hold Buffers; the other fields are strings, numbers and booleans, and a
  // replacer function would slow every QoS 1 delivery's write.
  return [meta.properties === undefined ? JSON.stringify(meta) : JSON.stringify(meta, replacer), bytes]
}

/** A packet read back as a plain object (wills, retained messages). */
export const decodePlain = (meta: string, payload: Buffer): StoredPacket => ({ ...(JSON.parse(meta, reviver) as object), payload }) as StoredPacket

/** An aedes-packet again, with the packet id it had (the constructor clears it). */
export function decodePacket(meta: string, payload: Buffer): StoredPacket {
  const plain = decodePlain(meta, payload)
  const packet = asPacket(plain)
  if (plain.messageId !== undefined) packet.messageId = plain.messageId
  return packet
}

/** What a queued message counts for in its client's byte budget: payload and topic. */
export function packetBytes(p: StoredPacket): number {
  const payload = typeof p.payload === 'string' ? Buffer.byteLength(p.payload) : (p.payload?.length ?? 0)
  return payload + Buffer.byteLength(p.topic ?? '')
}
