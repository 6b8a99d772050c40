// Payloads the broker keeps, in memory of their own.
//
// The MQTT parser hands a PUBLISH's payload over as a view into the whole socket read it came in
// (up to 64 kB). Kept as it is, a 1-byte message sent in one write with 60 kB meant for nobody
// held the 60 kB for as long as the message was kept: retained, queued for a session that is
// away, a client's last will, a QoS 2 message waiting for its PUBREL. Found from outside (test/e2e/
// gateway-retained-attack.test.ts): 5,000 such retained messages counted 34 kB and took 324 MB,
// and a session away with 5,000 queued 1-byte messages took 309 MB.

/** A packet as the persistence is handed one (only the payload is looked at here). */
interface WithPayload {
  payload: Buffer | Uint8Array | string
}

/** The payload in memory of its own (itself when it has that already, or is a string). */
export function ownedPayload<P extends WithPayload['payload']>(payload: P): P {
  if (typeof payload === 'string' || (payload.byteOffset === 0 && payload.buffer.byteLength === payload.length)) return payload
  // Not Buffer.from: a small copy lands in Node's shared 8 kB pool, another buffer to pin.
  const copy = Buffer.allocUnsafeSlow(payload.length)
  copy.set(payload)
  return copy as P
}

/**
 * `packet`, its payload now in memory of its own. In place: the packet is aedes' own (the message
 * being published, a client's will), and other code knows it by identity (a will's authorization,
 * for one); the bytes are the same.
 */
export function withOwnedPayload<P extends WithPayload>(packet: P): P {
  packet.payload = ownedPayload(packet.payload)
  return packet
}

/** The methods of aedes' persistence that keep a packet handed to them. */
interface Keeping {
  outgoingEnqueue(sub: unknown, packet: WithPayload): Promise<void>
  outgoingEnqueueCombi(subs: unknown, packet: WithPayload): Promise<void>
  incomingStorePacket(client: unknown, packet: WithPayload): Promise<void>
  putWill(client: unknown, packet: WithPayload): Promise<void>
}

/**
 * Makes a broker persistence (broker.db's or aedes' in memory) keep every packet it queues, holds
 * or stores as a will with its payload in memory of its own. One copy per message, however many
 * sessions it is queued for; a client's will is aedes' own object, so the connection's copy is
 * freed too. Retained messages are copied by the retained bound (retained-limit.ts).
 */
export function ownPayloads(persistence: Keeping): void {
  const enqueue = persistence.outgoingEnqueue.bind(persistence)
  const enqueueCombi = persistence.outgoingEnqueueCombi.bind(persistence)
  const storeIncoming = persistence.incomingStorePacket.bind(persistence)
  const putWill = persistence.putWill.bind(persistence)
  persistence.outgoingEnqueue = (sub, packet) => enqueue(sub, withOwnedPayload(packet))
  persistence.outgoingEnqueueCombi = (subs, packet) => enqueueCombi(subs, withOwnedPayload(packet))
  persistence.incomingStorePacket = (client, packet) => storeIncoming(client, withOwnedPayload(packet))
  persistence.putWill = (client, packet) => putWill(client, withOwnedPayload(packet))
}
