// A live bridge that loses its connection and gets it back with its session still on the broker:
// the broker restores the subscriptions it had, but sends retained messages only in answer to a
// SUBSCRIBE, and knows nothing of filters the bridge took up while it was away (issue 11).
import { describe, expect, it } from 'vitest'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createMessenger, ENVELOPE_VERSION, type BridgeStatus, type InboundMessage, type Messenger } from '../../runtime/index.js'
import { freshAedes } from '../helpers/aedes.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { until } from '../helpers/wait.js'

describe('an MQTT bridge that reconnects to its persistent session', () => {
  const cleanup = cleanupAfterEach()

  it('hears retained messages again, and receives on a filter it subscribed to while it was away', async () => {
    const broker = await freshAedes()
    cleanup(() => broker.close())
    const opened = (deviceId: string, reconnect?: { initialMs: number; maxMs: number }): Messenger => {
      const b = createMessenger({ bridge: createMqttBridge({ url: broker.url, deviceId, reconnect }) })
      cleanup(() => b.close({ drainMs: 50 }))
      return b
    }
    // Two devices leave a retained presence each.
    for (const src of ['dev-one', 'dev-two']) {
      const b = opened(src)
      await b.connect()
      await b.publish({ v: ENVELOPE_VERSION, kind: 'presence', id: `birth-${src}`, src, inst: 'i1', at: Date.now(), payload: { online: true, services: [] } }, { retain: true })
    }

    const listener = opened('listener', { initialMs: 300, maxMs: 300 })
    const heard: { filter: string; msg: InboundMessage }[] = []
    const on = (filter: string) => (msg: InboundMessage) => void heard.push({ filter, msg })
    await listener.subscribe('ob/dev-one/status', on('one'))
    await listener.connect()
    await until(() => heard.length === 1)

    // While it is away (the broker dropped it), it takes up a second filter.
    const statuses: BridgeStatus[] = []
    let subscribedAway: Promise<unknown> | undefined
    listener.onStatus((s) => {
      statuses.push(s)
      if (s.type === 'disconnected') subscribedAway = listener.subscribe('ob/dev-two/status', on('two'))
    })
    // aedes keeps its connected clients by id (not in its typings); closing one drops its connection only.
    ;(broker.aedes as unknown as { clients: Record<string, { close(): void }> }).clients['listener']!.close()
    await until(() => statuses.some((s) => s.type === 'connected'), 10_000)
    await subscribedAway

    const connected = statuses.find((s) => s.type === 'connected')
    expect(connected).toEqual({ type: 'connected', sessionPresent: true })
    await until(() => heard.some((h) => h.filter === 'two') && heard.filter((h) => h.filter === 'one').length === 2, 10_000)
    expect(heard.slice(1).map((h) => [h.filter, h.msg.envelope.src, h.msg.retained]).sort()).toEqual([
      ['one', 'dev-one', true],
      ['two', 'dev-two', true],
    ])
  }, 30_000)
})
