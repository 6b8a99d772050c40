import type { Aedes, AedesOptions, Client, PublishPacket } from 'aedes'
import type { BrokerEmitter } from './broker-emitter.js'
import type { MqttBrokerOptions } from './broker-options.js'

/** aedes' publish with the publishing client (the types leave the client out). */
type Publish = (packet: PublishPacket, client: Client | null | ((err?: Error) => void), done?: (err?: Error) => void) => void
/** One client PUBLISH published before its acknowledgement, and how its publish ended. */
interface Run {
  over: boolean
  err?: Error
  then?: (err?: Error) => void
}

/** The broker's publish path, built before aedes (its `authorizePublish`) and put on the instance after. */
export interface PublishPath {
  /** In place of the configured one; undefined when nothing is acknowledged after store and nothing waits. */
  readonly authorizePublish: AedesOptions['authorizePublish']
  /** Puts count order and the publish-before-PUBACK skip on the instance's own publish. */
  install(aedes: Aedes): void
}

/**
 * A client's PUBLISH goes through the configured `authorizePublish`, then `beforePublish`, then is
 * published, all before aedes acknowledges it: the PUBACK goes once the message is stored
 * (`acknowledgeAfterStore`). Every publish is numbered for the emitter's count order.
 */
export function publishPath(opts: MqttBrokerOptions, emitter: BrokerEmitter): PublishPath {
  const authorize = opts.aedes?.authorizePublish
  /**
   * Client PUBLISH packets published before their acknowledgement: aedes' own publish of them
   * afterwards is skipped, and calls back when the first one is over (delivered), so that aedes
   * reads the publisher's next packets only then, as it does without this.
   */
  const published = new WeakMap<object, Run>()
  /** aedes' publish in count order; `stored` is called when the message reaches the emitter (after the persistence took it). */
  let publish: ((packet: PublishPacket, client: Client | null, done: (err?: Error) => void, stored: () => void) => void) | undefined

  // Called by aedes between reading a PUBLISH and acknowledging it (handlers/publish.js),
  // so the publish happens here, and the PUBACK waits for it.
  function authorizePublish(client: Client | null, packet: PublishPacket, callback: (err?: Error | null) => void): void {
    const proceed = (err?: Error | null): void => {
      if (err != null) return callback(err)
      const before = client === null ? undefined : opts.beforePublish?.(packet)
      if (before === undefined) return go()
      // QoS 0: nothing is acknowledged, so nothing waits; the commit goes on behind.
      if (packet.qos === 0) {
        before.catch(() => {})
        return go()
      }
      before.then(go, (e: unknown) => callback(e instanceof Error ? e : new Error(String(e))))
    }
    const go = (): void => {
      // A client's QoS 1 PUBLISH carries a packet id; a will (published by aedes itself) does not.
      if (opts.acknowledgeAfterStore === false || packet.qos !== 1 || client === null || typeof packet.messageId !== 'number' || publish === undefined) return callback(null)
      let answered = false
      const answer = (err?: Error): void => {
        if (answered) return
        answered = true
        callback(err ?? null)
      }
      const run: Run = { over: false }
      published.set(packet, run)
      publish(
        packet,
        client,
        (failed?: Error) => {
          run.over = true
          run.err = failed
          run.then?.(failed)
          // Not stored: no PUBACK, the connection is closed and the client sends the message again.
          answer(failed)
        },
        // Stored (retained, queued in the persistence for every session it goes to): the PUBACK
        // goes now; delivery to connected subscribers goes on.
        () => answer(),
      )
    }
    if (authorize === undefined) proceed(null)
    else authorize(client as Client, packet, proceed)
  }

  return {
    authorizePublish: opts.acknowledgeAfterStore === false && opts.beforePublish === undefined ? undefined : authorizePublish,
    install(aedes) {
      // Every message in count order (see BrokerEmitter): the emitter is told the number each publish
      // takes (the Packet aedes makes first thing in publish takes ++counter) and when it is over,
      // delivered or not. Packets aedes numbers outside publish (retained messages sent to a new
      // subscriber) never reach the emitter and are not waited for.
      const counterOf = (): number => (aedes as unknown as { counter: number }).counter
      const original = (aedes.publish as unknown as Publish).bind(aedes)
      const counted = (packet: PublishPacket, client: Client | null | ((err?: Error) => void), done?: (err?: Error) => void, stored?: () => void): void => {
        const cb = typeof client === 'function' ? client : done
        const n = counterOf() + 1
        emitter.begin(n, stored)
        original(packet, typeof client === 'function' ? null : client, (err?: Error) => {
          // Refused before it was numbered (called back at once, nothing numbered since): no message n is coming.
          if (counterOf() < n) emitter.cancel(n)
          else emitter.end(n)
          cb?.(err)
        })
      }
      publish = counted
      // The instance's own publish, not aedes' code: a packet published before its PUBACK is not published again.
      const skipping: Publish = (packet, client, done) => {
        const run = published.get(packet)
        if (run === undefined) return counted(packet, client, done)
        published.delete(packet)
        const cb = typeof client === 'function' ? client : done
        if (run.over) cb?.(run.err)
        else run.then = cb
      }
      aedes.publish = skipping as unknown as Aedes['publish']
    },
  }
}
