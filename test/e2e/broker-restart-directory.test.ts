// A broker that restarts with its state (the gateway keeps sessions and retained messages across
// a restart of its aedes): every device comes back with its session present. The caller's
// directory must be complete again, whichever of them reconnects first (issue 11).
import type { AedesOptions } from 'aedes'
import aedesPersistence from 'aedes-persistence'
import { describe, expect, it } from 'vitest'
import { startMqttBroker, type MqttBroker } from '../../gateway/broker/mqtt-broker.js'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createRuntime, type BridgeStatus } from '../../runtime/index.js'
import { echoContract, echoService } from '../fixtures/services.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { freePort, until } from '../helpers/wait.js'

describe('when the broker restarts with its sessions and retained messages', () => {
  const cleanup = cleanupAfterEach()

  it('the caller, back on its session, knows the serving device again and calls it', async () => {
    const port = await freePort()
    const persistence = (aedesPersistence as unknown as () => NonNullable<AedesOptions['persistence']>)()
    let broker: MqttBroker = await startMqttBroker({ port, aedes: { persistence } })
    cleanup(() => broker.close())
    const fast = { initialMs: 50, maxMs: 300 }
    const server = createRuntime({ bridge: createMqttBridge({ url: broker.url, deviceId: 'echo-1', reconnect: fast }), services: [echoService()] })
    const callerBridge = createMqttBridge({ url: broker.url, deviceId: 'caller', reconnect: fast })
    const caller = createRuntime({ bridge: callerBridge, discoveryWaitMs: 5_000 })
    await server.start({ waitForBroker: true })
    await caller.start({ waitForBroker: true })
    cleanup(() => caller.stop({ drainMs: 100 }), () => server.stop({ drainMs: 100 }))
    const echo = caller.client(echoContract)
    expect(await echo.say({ text: 'before' })).toEqual({ text: 'before', device: 'echo-1' })

    const statuses: BridgeStatus[] = []
    callerBridge.onStatus((s) => statuses.push(s))
    await broker.close()
    await until(() => statuses.some((s) => s.type === 'reconnecting'))
    broker = await startMqttBroker({ port, aedes: { persistence } })
    await until(() => statuses.some((s) => s.type === 'connected'), 10_000)

    expect(statuses.find((s) => s.type === 'connected')).toEqual({ type: 'connected', sessionPresent: true })
    // A call made while the caller's connection is down again (the restarted broker, on a loaded
    // machine, may drop it once more) is refused at once, BRIDGE_UNAVAILABLE: not what this tests.
    // Any other failure is.
    const after = async (): Promise<unknown> => {
      for (const end = Date.now() + 15_000; ; await new Promise((r) => setTimeout(r, 100))) {
        try {
          return await echo.say({ text: 'after' }, { timeoutMs: 8_000 })
        } catch (err) {
          if ((err as { code?: string }).code !== 'BRIDGE_UNAVAILABLE' || Date.now() > end) throw err
        }
      }
    }
    expect(await after()).toEqual({ text: 'after', device: 'echo-1' })
    await until(() => caller.directory.deviceState('echo-1') === 'live')
  }, 30_000)
})
