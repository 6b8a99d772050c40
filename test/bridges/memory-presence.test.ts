// The memory bridge keeps presence as a broker does (issue 11): its goodbye names the device's
// services, and an empty retained frame on a presence topic clears it and says the device is gone.
import { describe, expect, it } from 'vitest'
import { createMemoryBridge, createMemoryHub, createRuntime, ENVELOPE_VERSION, ErrorCode, isOutpostError, type Runtime } from '../../runtime/index.js'
import { createEnvelopeCodec } from '../../runtime/wire/codec.js'
import { echoContract, echoService } from '../fixtures/services.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { until } from '../helpers/wait.js'

describe('presence over the memory bridge', () => {
  const cleanup = cleanupAfterEach()
  const hub = createMemoryHub()
  const started = async (id: string, withEcho: boolean): Promise<Runtime> => {
    const rt = createRuntime({ bridge: createMemoryBridge({ hub, deviceId: id }), services: withEcho ? [echoService()] : [], discoveryWaitMs: 100 })
    await rt.start({ waitForBroker: true })
    cleanup(() => rt.stop({ drainMs: 50 }))
    return rt
  }

  it('tells a caller that starts while the server is away that the service is unreachable, not unhandled', async () => {
    const server = await started('mem-echo', true)
    await server.stop({ drainMs: 50 })
    const caller = await started('mem-caller', false)
    await until(() => caller.directory.deviceState('mem-echo') === 'gone')
    let err: unknown
    await caller.client(echoContract).say({ text: 'anyone?' }).catch((e: unknown) => (err = e))
    expect(isOutpostError(err, ErrorCode.SERVICE_UNREACHABLE)).toBe(true)
  })

  it('takes an empty retained frame on a presence topic as the device gone, and clears it for those who come later', async () => {
    const caller = await started('mem-thermo', false)
    const raw = createMemoryBridge({ hub, deviceId: 'mem-raw' })
    await raw.connect()
    cleanup(() => raw.close({ drainMs: 50 }))
    const fake = createEnvelopeCodec().encode({
      v: ENVELOPE_VERSION, kind: 'presence', id: 'fake-birth', src: 'mem-fake', inst: 'f1', at: Date.now(),
      payload: { online: true, services: [{ name: 'echo', version: '1', commands: ['say'], events: [] }] },
    })
    await raw.publish('ob/mem-fake/status', fake, { retain: true })
    await until(() => caller.directory.deviceState('mem-fake') === 'live')
    await raw.publish('ob/mem-fake/status', new Uint8Array(0), { retain: true })
    await until(() => caller.directory.deviceState('mem-fake') === 'gone')
    const late = await started('mem-late', false)
    // The retained presence is gone: a runtime started afterwards never hears of mem-fake.
    await until(() => late.directory.deviceState('mem-thermo') === 'live')
    expect(late.directory.deviceState('mem-fake')).toBe('unknown')
  })
})
