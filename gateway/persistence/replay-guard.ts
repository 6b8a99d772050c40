// A persistent session that comes back while messages flow.
//
// aedes subscribes a returning client before it replays the client's queue (the persistence's
// `outgoingStream`, a copy taken then), so a message queued just before is also sent live. When
// the client acknowledged that one before the replay reached it, the replay's `outgoingUpdate`
// found it missing ("no such packet") and aedes cut the client off: 23 of 60 reconnects a client
// made while 1,000 messages/s came for it (found from outside; test/gateway/session-return.test.ts).
import { Readable } from 'node:stream'

interface Packet {
  qos?: number
  brokerId?: string
  brokerCounter?: number
}

/** The methods of aedes' persistence a replay goes through. */
interface Replaying {
  outgoingClearMessageId(client: { id: string }, packet: Packet): Promise<Packet | undefined>
  outgoingUpdate(client: { id: string }, packet: Packet): Promise<void>
  outgoingStream(client: { id: string }): Readable
}

/** Messages remembered as acknowledged, over all clients: more than a replay is ever behind. */
const REMEMBERED = 4096

/**
 * Makes a broker persistence (broker.db's or aedes' in memory) replay a returning client's queue
 * without what the client acknowledged meanwhile, and take the update of a QoS 1 message acked
 * while its replay was already on its way as done: it is sent once more, as QoS 1 allows, rather
 * than cutting the client off. Any other message missing still fails, as before (a client whose
 * queue had no room for it).
 */
export function guardReplay(persistence: Replaying): void {
  const acked = new Set<string>()
  const key = (client: { id: string }, p: Packet): string => `${client.id}\n${p.brokerId}\n${p.brokerCounter}`
  // Acknowledgements being written, by client: broker.db's takes the message out of the queue at
  // once but resolves after its commit, so an update can find it gone before it is known as acked.
  const clearing = new Map<string, Set<Promise<unknown>>>()
  const clear = persistence.outgoingClearMessageId.bind(persistence)
  const update = persistence.outgoingUpdate.bind(persistence)
  const stream = persistence.outgoingStream.bind(persistence)
  persistence.outgoingClearMessageId = (client, packet) => {
    const done = clear(client, packet).then((gone) => {
      if (gone !== undefined) {
        acked.add(key(client, gone))
        if (acked.size > REMEMBERED) acked.delete(acked.values().next().value!)
      }
      return gone
    })
    let inFlight = clearing.get(client.id)
    if (inFlight === undefined) clearing.set(client.id, (inFlight = new Set()))
    inFlight.add(done)
    const settled = (): void => {
      inFlight.delete(done)
      if (inFlight.size === 0 && clearing.get(client.id) === inFlight) clearing.delete(client.id)
    }
    done.then(settled, settled)
    return done
  }
  // Read one at a time (Readable.from keeps one ahead), each looked at as it is read.
  persistence.outgoingStream = (client) =>
    Readable.from(
      (async function* () {
        for await (const p of stream(client) as AsyncIterable<Packet>) if (!acked.has(key(client, p))) yield p
      })(),
    )
  persistence.outgoingUpdate = (client, packet) =>
    update(client, packet).catch(async (err: unknown) => {
      if (packet.qos !== 1) throw err
      await Promise.allSettled(clearing.get(client.id) ?? [])
      if (!acked.has(key(client, packet))) throw err
    })
}
