// A handler's own code can throw or return a value every look at which throws (a Proxy whose
// traps throw, say, from a library). The call fails as an internal error, whose message stays
// inside the device, and the device goes on serving.
import * as v from 'valibot'
import { describe, expect, it } from 'vitest'
import { createMemoryBridge, createMemoryHub, createRuntime, defineContract, defineService, ErrorCode, isOutpostError, type Runtime } from '../../runtime/index.js'
import { caught } from '../helpers/caught.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'

const trap = (): never => {
  throw new Error('secret from the trap')
}
const hostile = (): object => new Proxy({}, { get: trap, getPrototypeOf: trap, has: trap, ownKeys: trap, getOwnPropertyDescriptor: trap })

const odd = defineContract({
  name: 'odd',
  version: '1',
  commands: {
    run: { payload: v.object({ how: v.picklist(['throw', 'return', 'reject', 'fine']) }), result: v.object({ ok: v.boolean() }) },
  },
})

describe('a handler that throws or returns a value whose every look throws', () => {
  const cleanup = cleanupAfterEach()

  it('answers INTERNAL without the value’s message, and serves the next call', async () => {
    const hub = createMemoryHub()
    const started = async (rt: Runtime): Promise<Runtime> => {
      await rt.start({ waitForBroker: true })
      cleanup(() => rt.stop({ drainMs: 50 }))
      return rt
    }
    const svc = defineService(odd, {
      commands: {
        run: ({ how }) => {
          if (how === 'throw') throw hostile()
          if (how === 'return') return hostile() as never
          if (how === 'reject') return Promise.reject(hostile()) as never
          return { ok: true }
        },
      },
    })
    await started(createRuntime({ bridge: createMemoryBridge({ hub, deviceId: 'odd-1' }), services: [svc] }))
    const caller = await started(createRuntime({ bridge: createMemoryBridge({ hub, deviceId: 'caller' }), services: [], discoveryWaitMs: 1_000 }))
    const client = caller.client(odd)
    for (const how of ['throw', 'return', 'reject'] as const) {
      const err = await caught(client.run({ how }, { timeoutMs: 2_000 }))
      expect(isOutpostError(err, ErrorCode.INTERNAL), `${how}: ${String(err)}`).toBe(true)
      expect((err as Error).message).not.toContain('secret')
    }
    expect(await client.run({ how: 'fine' })).toEqual({ ok: true })
  })
})
