// A full `whenFull: refuse` target, driven from outside (found by a helper): a device's burst of
// QoS 1 events, of which the forward queue has room for the first few. The gateway refused the
// next one at once and closed the connection before the acknowledgements of the stored ones were
// written: the device sent them all again, they filled the queue again, and it never got past them
// (JetStream counted duplicates, the device's outbox stood still). Now the stored ones are
// acknowledged, the refused one waits for room and is refused only if none comes, and once the
// link is back every event is in the stream once.
import mqtt from 'mqtt'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { defaultGatewayConfig } from '../../gateway/config/gateway-config.js'
import { startGateway } from '../../gateway/index.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { jetstreamForward } from '../helpers/jetstream-forward.js'
import { eventSlots, rawFrame, rawId } from '../helpers/raw-wire.js'
import { tcpProxy } from '../helpers/tcp-proxy.js'
import { until } from '../helpers/wait.js'

const BURST = 12

describe('a full forward queue that refuses (whenFull: refuse)', () => {
  const cleanup = cleanupAfterEach()

  it('acknowledges what it stored before it refuses the next event, and every event reaches the stream once after the link is back', async () => {
    const proxy = await tcpProxy('nats://127.0.0.1:4222')
    cleanup(() => proxy.close())
    const { stream, dir, jsm, forward } = await jetstreamForward(cleanup, { stream: 'FWD_REFUSE_', subject: 'fwdrefuse', dir: 'outpost-fwd-refuse-' })
    // Through the proxy, with room for a few events only.
    Object.assign(forward.targets.js!, { servers: [`nats://127.0.0.1:${new URL(proxy.url).port}`], window: 64, confirmTimeoutMs: 2_000, maxBytes: 3_000 })
    const gw = await startGateway({ config: { ...defaultGatewayConfig(), dataDir: dir, persistence: 'sqlite' as const, forward }, port: 0, logger: pino({ level: 'silent' }) })
    cleanup(() => gw.close())
    const js = () => gw.forwarder!.stats().targets.js!
    await until(() => js().state === 'up', 20_000)
    await proxy.down()

    // One write of BURST events, as a device's outbox sends a backlog.
    const frames = Array.from({ length: BURST }, (_, n) => rawFrame(eventSlots({ id: rawId(), src: 'meter-1', service: 'meter', name: 'reading', payload: { n, pad: 'x'.repeat(200) } })))
    const device = await mqtt.connectAsync(gw.broker.url, { clientId: 'meter-1', reconnectPeriod: 0 })
    const acked: number[] = []
    const sent = frames.map((f, n) => device.publishAsync('ob/meter-1/evt/meter/1/reading', f, { qos: 1 }).then(() => void acked.push(n), () => undefined))
    await Promise.race([Promise.all(sent), new Promise<void>((r) => device.once('close', () => r()))])
    await until(() => device.disconnected || !device.connected, 20_000)
    device.end(true)
    const stored = js().backlog.messages
    // The queue held some, not all; each one it stored was acknowledged to the device, which so
    // has only the rest to send again.
    expect(stored).toBeGreaterThan(0)
    expect(stored).toBeLessThan(BURST)
    expect(acked).toEqual(Array.from({ length: stored }, (_, n) => n))
    expect(gw.forwarder!.stats().dropped.refused).toBeGreaterThanOrEqual(1)

    // The link is back: the queue drains; the device sends what was not acknowledged, in order.
    await proxy.up()
    await until(() => js().backlog.messages === 0, 30_000)
    for (let next = stored; next < BURST; ) {
      const again = await mqtt.connectAsync(gw.broker.url, { clientId: 'meter-1', reconnectPeriod: 0 })
      const done: number[] = []
      await Promise.race([
        Promise.all(frames.slice(next).map((f, i) => again.publishAsync('ob/meter-1/evt/meter/1/reading', f, { qos: 1 }).then(() => void done.push(next + i), () => undefined))),
        new Promise<void>((r) => again.once('close', () => r())),
      ])
      again.end(true)
      expect(done.length, 'each try gets some acknowledged').toBeGreaterThan(0)
      next += done.length
      await until(() => js().backlog.messages === 0, 30_000)
    }
    const info = await jsm.streams.info(stream)
    expect([info.state.messages, js().duplicates ?? 0]).toEqual([BURST, 0])
  }, 120_000)
})
