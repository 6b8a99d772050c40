// Envelope v1 written by hand (runtime/wire/README.md), not with Outpost's codec: attack tests
// build frames the way any client on the broker could, including ones Outpost would never write.
import { randomBytes } from 'node:crypto'
import { Decoder, Encoder } from 'cbor-x'

/** A plain cbor-x encoder (no records), as a third-party client would use. */
export const rawEncoder = new Encoder({ useRecords: false })
/** A plain cbor-x decoder for what the device sends back. */
export const rawDecoder = new Decoder({ useRecords: false, mapsAsObjects: true })

/** Positions of the envelope fields in the wire array. */
export const FIELD = {
  v: 0, kind: 1, id: 2, src: 3, inst: 4, at: 5, service: 6, version: 7, name: 8, corr: 9,
  replyTo: 10, target: 11, deadline: 12, traceparent: 13, tenant: 14, principal: 15, payload: 16, error: 17,
} as const

/** Kind codes on the wire. */
export const KIND = { command: 0, reply: 1, event: 2, presence: 3 } as const

/** The head of a CBOR item of major type `major` (0–7) with argument `n`. */
export function cborHead(major: number, n: number): Buffer {
  const m = major << 5
  if (n < 24) return Buffer.from([m | n])
  if (n < 0x100) return Buffer.from([m | 24, n])
  if (n < 0x10000) return Buffer.from([m | 25, n >> 8, n & 0xff])
  const b = Buffer.alloc(5)
  b[0] = m | 26
  b.writeUInt32BE(n, 1)
  return b
}

/** A CBOR array of items already encoded. */
export function cborArrayOf(items: readonly Uint8Array[]): Buffer {
  return Buffer.concat([cborHead(4, items.length), ...items])
}

/** Encodes envelope slots as a CBOR array; slots named in `raw` are written as the given bytes instead. */
export function rawFrame(slots: readonly unknown[], raw: Record<number, Uint8Array> = {}): Buffer {
  return cborArrayOf(slots.map((s, i) => raw[i] ?? rawEncoder.encode(s)))
}

/** A fresh 26-character message id (not a ULID: the device must not care). */
export function rawId(): string {
  return randomBytes(13).toString('hex').toUpperCase()
}

/** The slots of a command envelope. */
export function commandSlots(o: { id?: string; src: string; service: string; version?: string; name: string; replyTo?: unknown; target: string; deadline?: number; payload: unknown }): unknown[] {
  const at = Date.now()
  return [1, KIND.command, o.id ?? rawId(), o.src, 'raw-inst', at, o.service, o.version ?? '1', o.name, null, o.replyTo ?? o.src, o.target, o.deadline ?? at + 30_000, null, null, null, o.payload]
}

/** The slots of an event envelope. */
export function eventSlots(o: { id?: string; src: string; service: string; version?: string; name: string; corr?: string; payload: unknown }): unknown[] {
  return [1, KIND.event, o.id ?? rawId(), o.src, 'raw-inst', Date.now(), o.service, o.version ?? '1', o.name, o.corr ?? null, null, null, null, null, null, null, o.payload]
}

/** The slots of a reply envelope. */
export function replySlots(o: { id?: string; src: string; corr: string; replyTo: string; payload?: unknown; error?: unknown }): unknown[] {
  return [1, KIND.reply, o.id ?? rawId(), o.src, 'raw-inst', Date.now(), null, null, null, o.corr, o.replyTo, null, null, null, null, null, o.payload ?? null, o.error ?? null]
}

/** The slots of a presence envelope announcing `services`. */
export function presenceSlots(o: { id?: string; src: string; online?: boolean; services: unknown }): unknown[] {
  return [1, KIND.presence, o.id ?? rawId(), o.src, 'raw-inst', Date.now(), null, null, null, null, null, null, null, null, null, null, { online: o.online ?? true, services: o.services }]
}
