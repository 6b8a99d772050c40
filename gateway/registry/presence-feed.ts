// What the broker carries into the fleet registry: every publish on `ob/<device>/status` (retained
// births, last wills, goodbyes, clears) and `ob/<device>/contract`, and the end of a connection
// that announced a device online and left without saying it went.
//
// Such a client (a clean DISCONNECT with no goodbye, a dropped connection with no will, or a will
// of another process than its birth, which the registry takes as stale) left its device online,
// in the registry and in its retained status: commands were routed to it and ran to their
// TIMEOUT, and devices' round robins picked it too (found from outside, with a plain MQTT client
// and a device's own credentials; a revoked one stayed online as well). When that connection ends
// and no client of its id is back within LEFT_AFTER_MS, the gateway says the device went, as a
// will would: a retained offline presence of the instance that announced it, on its status
// topic, which the registry and every device's directory take. Outpost devices say so themselves
// (a goodbye, a will) before that, and nothing more is sent for them.
import type { Aedes, Client, PublishPacket } from 'aedes'
import type { Logger } from 'pino'
import { offlinePresence } from '../../runtime/messaging/presence.js'
import { createEnvelopeCodec } from '../../runtime/wire/codec.js'
import { DEFAULT_TOPIC_PREFIX } from '../../runtime/wire/topics.js'
import type { Registry } from './registry.js'

/** How long a client that announced a device may be away before the gateway says the device went, ms. */
export const LEFT_AFTER_MS = 1_000

export interface PresenceFeed {
  /** Feeds the registry from this broker (one per start of the broker: a drill makes a new one). */
  attach(aedes: Aedes): void
  close(): void
}

export function createPresenceFeed(opts: { registry: Registry; log: Logger; onError: (err: unknown) => void; leftAfterMs?: number }): PresenceFeed {
  const { registry, log } = opts
  const prefix = `${DEFAULT_TOPIC_PREFIX}/`
  const codec = createEnvelopeCodec()
  // The devices each connection announced online, with the instance it announced.
  const announced = new Map<Client, Map<string, string>>()
  const timers = new Set<NodeJS.Timeout>()

  /** Says `device` went, on behalf of the client that announced `instance` and did not come back. */
  const sayGone = (aedes: Aedes, clientId: string, device: string, instance: string): void => {
    if (aedes.closed || (aedes as unknown as { clients: Record<string, unknown> }).clients[clientId] !== undefined) return
    const e = registry.get(device)
    if (e === undefined || !e.online || e.instance !== instance) return
    const env = offlinePresence(device, instance, Date.now(), e.services)
    env.payload = { ...(env.payload as object), runtime: e.runtime }
    log.info({ device, client: clientId.slice(0, 64), instance }, 'a client left without saying its device went: the gateway says it went')
    aedes.publish({ cmd: 'publish', topic: `${prefix}${device}/status`, payload: Buffer.from(codec.encode(env)), qos: 1, retain: true, dup: false } as PublishPacket, () => {})
  }

  return {
    attach(aedes) {
      aedes.on('publish', (packet: PublishPacket, client: Client | null) => {
        const topic = packet.topic
        if (!topic.startsWith(prefix) || !(topic.endsWith('/status') || topic.endsWith('/contract'))) return
        try {
          registry.observe(topic, packet.payload as Uint8Array, Date.now())
          if (client === null || client === undefined || !topic.endsWith('/status')) return
          const device = topic.slice(prefix.length, -'/status'.length)
          const e = registry.get(device)
          let mine = announced.get(client)
          if (e?.online === true && e.instance !== undefined) {
            if (mine === undefined) announced.set(client, (mine = new Map()))
            mine.set(device, e.instance)
          } else if (mine?.delete(device) === true && mine.size === 0) announced.delete(client)
        } catch (err) {
          opts.onError(err)
        }
      })
      aedes.on('clientDisconnect', (client: Client) => {
        const mine = announced.get(client)
        if (mine === undefined) return
        announced.delete(client)
        const t = setTimeout(() => {
          timers.delete(t)
          for (const [device, instance] of mine) sayGone(aedes, client.id, device, instance)
        }, opts.leftAfterMs ?? LEFT_AFTER_MS)
        t.unref()
        timers.add(t)
      })
    },
    close() {
      for (const t of timers) clearTimeout(t)
      timers.clear()
    },
  }
}
