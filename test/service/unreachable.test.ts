// NO_HANDLER means nobody declares the service; a service known from before whose instances are
// not live just now is SERVICE_UNREACHABLE, which a caller may retry (issue 11).
import { describe, expect, it } from 'vitest'
import { createMemoryBridge, createMemoryHub, createRuntime, ErrorCode, isOutpostError, type Runtime } from '../../runtime/index.js'
import { echoContract, echoService } from '../fixtures/services.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { until } from '../helpers/wait.js'
import { caught } from '../helpers/caught.js'

describe('a call to a service whose devices are away', () => {
  const cleanup = cleanupAfterEach()

  it('fails with SERVICE_UNREACHABLE (retryable) when the service is known, NO_HANDLER when nobody ever declared it, and succeeds once the device is back', async () => {
    const hub = createMemoryHub()
    const started = async (id: string, withEcho: boolean): Promise<Runtime> => {
      const rt = createRuntime({ bridge: createMemoryBridge({ hub, deviceId: id }), services: withEcho ? [echoService()] : [], discoveryWaitMs: 100 })
      await rt.start({ waitForBroker: true })
      cleanup(() => rt.stop({ drainMs: 50 }))
      return rt
    }
    const server = await started('dev-echo', true)
    const caller = await started('caller', false)
    const echo = caller.client(echoContract)
    expect(await echo.say({ text: 'hi' })).toEqual({ text: 'hi', device: 'dev-echo' })

    await server.stop({ drainMs: 50 })
    await until(() => caller.directory.instances('echo', '1').length === 0)
    const away = await caught(echo.say({ text: 'anyone?' }))
    expect(isOutpostError(away, ErrorCode.SERVICE_UNREACHABLE)).toBe(true)
    expect((away as { retryable: boolean }).retryable).toBe(true)
    // Named explicitly, the device that went away is unreachable too.
    const named = await caught(echo.say({ text: 'you?' }, { device: 'dev-echo' }))
    expect(isOutpostError(named, ErrorCode.SERVICE_UNREACHABLE)).toBe(true)
    const nobody = await caught(caller.invoke({ service: 'nobody', command: 'x' }, {}))
    expect(isOutpostError(nobody, ErrorCode.NO_HANDLER)).toBe(true)

    await started('dev-echo', true)
    expect(await echo.say({ text: 'back' })).toEqual({ text: 'back', device: 'dev-echo' })
  })
})
