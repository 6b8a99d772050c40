import { finished, type Duplex } from 'node:stream'
import type { Aedes, Client } from 'aedes'

/** A delivery as aedes makes it to one client (Client.deliverQoS and Client.deliver0). */
type Deliver = (packet: unknown, done: (err?: Error) => void) => void
interface Delivering {
  deliverQoS: Deliver
  deliver0: Deliver
}

/**
 * Makes the CONNACK the first packet a client gets [MQTT-3.2.0-1]. aedes (1.2) subscribes a
 * returning persistent session again (restoreSubs) two steps before it writes the CONNACK, and
 * delivers what is published meanwhile at once. MQTT.js takes such a PUBLISH, holds its PUBACK
 * until it is connected, and reads nothing more, the CONNACK included, until its connect
 * timeout closes the connection: a gateway restarting while devices published did not get its
 * own connection for 30 s, and its start failed. Here the deliveries to a client wait, in
 * order, until its CONNACK went out (or its connection is gone, when aedes settles them as it
 * settles any delivery to a closed client). Call it for each connection as aedes takes it.
 */
export function connackFirst(aedes: Aedes): (client: Client, conn: Duplex) => void {
  const releases = new WeakMap<object, () => void>()
  aedes.on('connackSent', (_packet, client) => releases.get(client)?.())
  return (client, conn) => {
    const c = client as unknown as Delivering
    let held: (() => void)[] | undefined = []
    const hold =
      (deliver: Deliver): Deliver =>
      (packet, done) => {
        if (held === undefined) deliver(packet, done)
        else held.push(() => deliver(packet, done))
      }
    c.deliverQoS = hold(c.deliverQoS)
    c.deliver0 = hold(c.deliver0)
    const release = (): void => {
      const waiting = held
      held = undefined
      releases.delete(client)
      if (waiting !== undefined) for (const go of waiting) go()
    }
    releases.set(client, release)
    finished(conn, release)
  }
}
