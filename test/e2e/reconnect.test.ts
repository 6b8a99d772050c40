import net from 'node:net'
import { describe, expect, it } from 'vitest'
import { startMqttBroker, type MqttBroker } from '../../gateway/broker/mqtt-broker.js'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createRuntime, ErrorCode, isOutpostError, type BridgeStatus, type Runtime } from '../../runtime/index.js'
import { counterContract, counterService, echoContract, echoService } from '../fixtures/services.js'
import { freePort, until } from '../helpers/wait.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'

async function outcome(p: Promise<unknown>): Promise<{ ok: boolean; value?: unknown; error?: unknown }> {
  try {
    return { ok: true, value: await p }
  } catch (error) {
    return { ok: false, error }
  }
}

describe('when the broker goes away and comes back', () => {
  const cleanup = cleanupAfterEach()

  it('fails or completes calls in flight, reports it on the status stream, and serves again', async () => {
    const port = await freePort()
    let broker: MqttBroker = await startMqttBroker({ port })
    cleanup(() => broker.close())
    const fast = { initialMs: 50, maxMs: 400 }
    const device = createRuntime({ bridge: createMqttBridge({ url: broker.url, deviceId: 'dev-a', reconnect: fast }), services: [counterService({ executions: 0, slowAborted: 0, events: [] })] })
    const callerBridge = createMqttBridge({ url: broker.url, deviceId: 'caller', reconnect: fast })
    const caller = createRuntime({ bridge: callerBridge })
    const statuses: BridgeStatus[] = []
    callerBridge.onStatus((s) => statuses.push(s))
    await device.start({ waitForBroker: true })
    await caller.start({ waitForBroker: true })
    cleanup(() => caller.stop({ drainMs: 100 }), () => device.stop({ drainMs: 100 }))
    const counter = caller.client(counterContract)
    expect(await counter.add({ deviceId: 'a', reading: 1, ts: 1 })).toEqual({ ok: true, n: 1 })

    const inFlight = outcome(counter.slow({ ms: 300 }, { timeoutMs: 1_500 }))
    await new Promise((r) => setTimeout(r, 50))
    await broker.close()
    await until(() => statuses.some((s) => s.type === 'reconnecting'))

    const offline = await outcome(counter.add({ deviceId: 'a', reading: 2, ts: 2 }))
    expect(offline.ok).toBe(false)
    expect(isOutpostError(offline.error, ErrorCode.BRIDGE_UNAVAILABLE)).toBe(true)

    const settled = await inFlight
    if (!settled.ok) expect(isOutpostError(settled.error, ErrorCode.TIMEOUT)).toBe(true)

    broker = await startMqttBroker({ port })
    await until(() => callerBridge.status.type === 'connected')
    await until(() => caller.directory.instances('counter', '1').length === 1)
    expect(await counter.add({ deviceId: 'a', reading: 3, ts: 3 })).toEqual({ ok: true, n: 2 })

    const kinds = statuses.map((s) => s.type)
    const lost = kinds.indexOf('disconnected')
    expect(lost).toBeGreaterThan(-1)
    expect(kinds.slice(lost)).toEqual(expect.arrayContaining(['reconnecting', 'connecting', 'connected']))
    const delays = statuses.flatMap((s) => (s.type === 'reconnecting' ? [s.delayMs] : []))
    expect(Math.max(...delays)).toBeLessThanOrEqual(400)
  })

  it('completes a call whose reply was lost in a broker restart, running the command once', async () => {
    const port = await freePort()
    let broker: MqttBroker = await startMqttBroker({ port })
    cleanup(() => broker.close())
    const fast = { initialMs: 50, maxMs: 300 }
    const seen = { executions: 0, slowAborted: 0, events: [] as { n: number; by: string; from: string }[], slowRuns: 0 }
    const device = createRuntime({ bridge: createMqttBridge({ url: broker.url, deviceId: 'dev-a', reconnect: fast }), services: [counterService(seen)] })
    const caller = createRuntime({ bridge: createMqttBridge({ url: broker.url, deviceId: 'caller', reconnect: fast }) })
    await device.start({ waitForBroker: true })
    await caller.start({ waitForBroker: true })
    cleanup(() => caller.stop({ drainMs: 100 }), () => device.stop({ drainMs: 100 }))
    await until(() => caller.directory.instances('counter', '1').length === 1)

    // The handler finishes while the broker is down: its reply cannot be delivered then.
    const call = outcome(caller.client(counterContract).slow({ ms: 500 }, { timeoutMs: 8_000 }))
    await until(() => seen.slowRuns === 1)
    await broker.close()
    await new Promise((r) => setTimeout(r, 700))
    broker = await startMqttBroker({ port })

    const result = await call
    expect(result).toEqual({ ok: true, value: { aborted: false } })
    expect(seen.slowRuns).toBe(1)
    expect(device.stats().duplicateCommands).toBeGreaterThanOrEqual(1)
  })

  it('gives a typed error, not a hang, when no broker is there at all', async () => {
    const port = await freePort()
    const bridge = createMqttBridge({ url: `mqtt://127.0.0.1:${port}`, deviceId: 'lonely', reconnect: { initialMs: 50, maxMs: 200 } })
    const rt = createRuntime({ bridge, services: [echoService()] })
    cleanup(() => rt.stop({ drainMs: 50 }))
    const waited = await outcome(rt.start({ waitForBroker: true }))
    expect(isOutpostError(waited.error, ErrorCode.BRIDGE_UNAVAILABLE)).toBe(true)
    // Offline, its own services still answer; other services cannot be reached.
    expect(await rt.client(echoContract).say({ text: 'still here' })).toEqual({ text: 'still here', device: 'lonely' })
    const remote = await outcome(rt.invoke({ service: 'elsewhere', command: 'x' }, {}, { timeoutMs: 200 }))
    expect(isOutpostError(remote.error, ErrorCode.BRIDGE_UNAVAILABLE)).toBe(true)
  })

  it('stops promptly while the broker is away, with publishes still unacknowledged', async () => {
    const port = await freePort()
    const broker = await startMqttBroker({ port })
    const bridge = createMqttBridge({ url: broker.url, deviceId: 'dev-gone', reconnect: { initialMs: 50, maxMs: 400 } })
    const device = createRuntime({ bridge, services: [counterService({ executions: 0, slowAborted: 0, events: [] })] })
    await device.start({ waitForBroker: true })
    await broker.close()
    await until(() => bridge.status.type === 'reconnecting')
    // A stop that waited for mqtt.js to flush would wait for a broker that is not there.
    const stopped = await Promise.race([device.stop({ drainMs: 200 }).then(() => 'stopped'), new Promise((r) => setTimeout(() => r('still stopping'), 5_000))])
    expect(stopped).toBe('stopped')
    expect(bridge.status.type).toBe('closed')
  })

  it('says which port is taken instead of failing obscurely', async () => {
    const holder = net.createServer()
    await new Promise<void>((r) => holder.listen(0, '127.0.0.1', () => r()))
    cleanup(() => new Promise<void>((r) => holder.close(() => r())))
    const port = (holder.address() as net.AddressInfo).port
    const result = await outcome(startMqttBroker({ port }))
    expect(isOutpostError(result.error, ErrorCode.PORT_IN_USE)).toBe(true)
    expect((result.error as Error).message).toContain(String(port))
  })
})
