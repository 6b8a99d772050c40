// A client that announces a device online and leaves without saying it went: a plain MQTT.js
// client (not Outpost) with hand-built presence frames, against the gateway as it runs. It left
// the device online in the registry and in its retained status (commands to it ran to TIMEOUT,
// devices' round robins picked it); now the gateway says it went, as a will would.
import mqtt, { type MqttClient } from 'mqtt'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { defaultGatewayConfig } from '../../gateway/config/gateway-config.js'
import { startGateway, type Gateway } from '../../gateway/index.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { presenceSlots, rawDecoder, rawFrame } from '../helpers/raw-wire.js'
import { until } from '../helpers/wait.js'

const services = [{ name: 'echo', version: '1', commands: ['say'], events: [] }]
/** A presence frame of instance `inst` (presenceSlots names 'raw-inst'). */
const presence = (src: string, online: boolean, inst = 'raw-inst'): Buffer => {
  const slots = presenceSlots({ src, online, services })
  slots[4] = inst
  return rawFrame(slots)
}

describe('a device whose client left without saying it went', () => {
  const cleanup = cleanupAfterEach()

  const gateway = async (): Promise<{ gw: Gateway; said: () => number }> => {
    const lines: string[] = []
    const logger = pino({ level: 'info' }, { write: (l: string) => void lines.push(l) })
    const gw = await startGateway({ config: defaultGatewayConfig(), port: 0, logger })
    cleanup(() => gw.close())
    return { gw, said: () => lines.filter((l) => l.includes('the gateway says it went')).length }
  }
  const announce = async (gw: Gateway, id: string, opts: mqtt.IClientOptions = {}): Promise<MqttClient> => {
    const c = await mqtt.connectAsync(gw.broker.url, { clientId: id, reconnectPeriod: 0, ...opts })
    cleanup(() => c.endAsync(true))
    await c.publishAsync(`ob/${id}/status`, presence(id, true), { qos: 1, retain: true })
    await until(() => gw.registry.get(id)?.online === true, 10_000)
    return c
  }
  /** The retained status of `id`, as a device's directory reads it: online, and the instance. */
  const retained = async (gw: Gateway, id: string): Promise<{ online: boolean; inst: string }> => {
    const c = await mqtt.connectAsync(gw.broker.url, { clientId: `reader-${id}`, reconnectPeriod: 0 })
    try {
      const got = new Promise<Buffer>((r) => c.once('message', (_t, p) => r(p)))
      await c.subscribeAsync(`ob/${id}/status`, { qos: 1 })
      const slots = rawDecoder.decode(await got) as unknown[]
      return { online: (slots[16] as { online: boolean }).online, inst: slots[4] as string }
    } finally {
      await c.endAsync(true)
    }
  }

  it('a clean DISCONNECT with no goodbye, a dropped connection with no will, a will of another instance: offline in the registry and in the retained status', async () => {
    const { gw, said } = await gateway()
    const clean = await announce(gw, 'ph-1')
    const dropped = await announce(gw, 'ph-2')
    // The will names another process than the birth: the registry takes it as stale.
    const stale = await announce(gw, 'ph-3', { will: { topic: 'ob/ph-3/status', payload: presence('ph-3', false, 'other-inst'), qos: 1, retain: true } })
    await clean.endAsync()
    dropped.stream.destroy()
    stale.stream.destroy()
    for (const id of ['ph-1', 'ph-2', 'ph-3']) {
      await until(() => gw.registry.get(id)?.online === false, 10_000)
      expect(await retained(gw, id)).toEqual({ online: false, inst: 'raw-inst' })
    }
    expect(said()).toBe(3)
    // Calls to them are DEVICE_OFFLINE at once, not a TIMEOUT.
    expect(gw.registry.online()).toBe(0)
  }, 60_000)

  it('says nothing for a client that said its device went, nor for one back within a second', async () => {
    const { gw, said } = await gateway()
    const polite = await announce(gw, 'ok-1')
    await polite.publishAsync('ob/ok-1/status', presence('ok-1', false), { qos: 1, retain: true })
    await polite.endAsync()
    const back = await announce(gw, 'ok-2')
    back.stream.destroy()
    await announce(gw, 'ok-2')
    await new Promise((r) => setTimeout(r, 2_000))
    expect(gw.registry.get('ok-1')?.online).toBe(false)
    expect(gw.registry.get('ok-2')?.online).toBe(true)
    expect(await retained(gw, 'ok-2')).toEqual({ online: true, inst: 'raw-inst' })
    expect(said()).toBe(0)
  }, 60_000)
})
