// start({ connectInBackground: true }): the runtime serves local work as soon as it resolves, and
// connects after; the presence goes out and the outbox drains once the broker is there.
import { Decoder } from 'cbor-x'
import mqtt from 'mqtt'
import { pino, type Logger } from 'pino'
import * as v from 'valibot'
import { describe, expect, it } from 'vitest'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createMemoryOutbox, createRuntime, defineContract, defineService, ErrorCode } from '../../runtime/index.js'
import { startMqttBroker } from '../../gateway/broker/mqtt-broker.js'
import { freshAedes } from '../helpers/aedes.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { freePort, until } from '../helpers/wait.js'

const meter = defineContract({
  name: 'meter',
  version: '1',
  commands: { record: { payload: v.object({ count: v.number() }), result: v.object({ emitted: v.number() }) } },
  events: { sample: v.object({ seq: v.number() }) },
})
const meterService = defineService(meter, {
  commands: {
    record: async ({ count }, ctx) => {
      for (let i = 0; i < count; i++) await ctx.emit('sample', { seq: i })
      return { emitted: count }
    },
  },
})

describe('start with the connection in the background', () => {
  const cleanup = cleanupAfterEach()
  const capture = (): { lines: Record<string, unknown>[]; logger: Logger } => {
    const lines: Record<string, unknown>[] = []
    return { lines, logger: pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) }) }
  }

  it('serves local work before it connects; then announces itself and the outbox drains, in order', async () => {
    const broker = await freshAedes()
    cleanup(() => broker.close())
    const listener = await mqtt.connectAsync(broker.url, { clientId: 'bg-listener' })
    cleanup(() => listener.endAsync())
    const dec = new Decoder({ useRecords: false, mapsAsObjects: true })
    const seqs: number[] = []
    let online = false
    listener.on('message', (topic, buf) => {
      if (buf.length === 0) return
      const a = dec.decode(buf) as unknown[]
      if (topic === 'ob/bg-1/status') online = (a[16] as { online: boolean }).online
      else seqs.push((a[16] as { seq: number }).seq)
    })
    await listener.subscribeAsync(['ob/bg-1/status', 'ob/bg-1/evt/#'], { qos: 1 })

    const { lines, logger } = capture()
    const bridge = createMqttBridge({ url: broker.url, deviceId: 'bg-1' })
    const rt = createRuntime({ bridge, services: [meterService], outbox: createMemoryOutbox(), logger })
    cleanup(() => rt.stop({ drainMs: 100 }))
    await rt.start({ connectInBackground: true })
    // Resolved before the connection was even begun …
    expect(bridge.status.type).toBe('idle')
    expect(lines.map((l) => l.msg)).toEqual(['runtime started'])
    // … and its own commands and events work already: the events wait in the outbox.
    expect(await rt.client(meter).record({ count: 3 })).toEqual({ emitted: 3 })

    await until(() => online && seqs.length === 3)
    expect(seqs).toEqual([0, 1, 2])
    expect(lines.map((l) => l.msg)).toContain('connected to the broker')
    expect(rt.stats().outbox?.entries).toBe(0)
  })

  it('with no broker to reach: resolves at once, serves local work, and says once that it runs offline', async () => {
    const url = `mqtt://127.0.0.1:${await freePort()}`
    const { lines, logger } = capture()
    const rt = createRuntime({ bridge: createMqttBridge({ url, deviceId: 'bg-2', reconnect: { initialMs: 50, maxMs: 100 } }), services: [meterService], outbox: createMemoryOutbox(), logger })
    cleanup(() => rt.stop({ drainMs: 100 }))
    await rt.start({ connectInBackground: true })
    expect(await rt.client(meter).record({ count: 2 })).toEqual({ emitted: 2 })
    await until(() => lines.some((l) => l.msg === 'broker unreachable at start; running offline and retrying'))
    await new Promise((r) => setTimeout(r, 300)) // retries meanwhile
    expect(lines.filter((l) => l.msg === 'broker unreachable at start; running offline and retrying')).toHaveLength(1)
    expect(rt.stats().outbox?.entries).toBe(2)
    // The broker comes: the first connection says so, once (a device that started offline never
    // said it, though its ready line promises it), and the outbox drains.
    const broker = await startMqttBroker({ port: Number(new URL(url).port) })
    cleanup(() => broker.close())
    await until(() => lines.some((l) => l.msg === 'connected to the broker') && rt.stats().outbox?.entries === 0, 10_000)
    expect(lines.filter((l) => l.msg === 'connected to the broker')).toHaveLength(1)
  })

  it('stopped before its first connection: stops cleanly and says nothing of the broker', async () => {
    const broker = await freshAedes()
    cleanup(() => broker.close())
    const { lines, logger } = capture()
    const rt = createRuntime({ bridge: createMqttBridge({ url: broker.url, deviceId: 'bg-3' }), services: [meterService], logger })
    await rt.start({ connectInBackground: true })
    await rt.stop({ drainMs: 100 })
    await new Promise((r) => setTimeout(r, 50))
    expect(lines.map((l) => l.msg)).toEqual(['runtime started', 'runtime stopped'])
  })

  it('waitForBroker wins: the start fails when the broker cannot be reached', async () => {
    const url = `mqtt://127.0.0.1:${await freePort()}`
    const rt = createRuntime({ bridge: createMqttBridge({ url, deviceId: 'bg-4', reconnect: { initialMs: 60_000, maxMs: 60_000 } }), services: [meterService] })
    cleanup(() => rt.stop({ drainMs: 0 }))
    await expect(rt.start({ connectInBackground: true, waitForBroker: true })).rejects.toMatchObject({ code: ErrorCode.BRIDGE_UNAVAILABLE })
  })
})
