// The thermo service on the memory bridge, with a sensor that reads what the test says.
import { describe, expect, it } from 'vitest'
import { createMemoryBridge, createMemoryHub, createRuntime } from '../../runtime/index.js'
import { thermoContract } from '../../devices/contracts/thermo.js'
import { createThermoService } from '../../devices/thermo/thermo-service.js'

describe('thermo service', () => {
  it('answers read in Fahrenheit as °C × 9/5 + 32, to a tenth', async () => {
    const hub = createMemoryHub()
    let now = 0
    const thermo = createRuntime({
      bridge: createMemoryBridge({ hub, deviceId: 'thermo-t' }),
      services: [createThermoService({ deviceId: 'thermo-t', sampleMs: 3_600_000 })],
      resources: { sensor: { celsius: () => now } },
    })
    const caller = createRuntime({ bridge: createMemoryBridge({ hub, deviceId: 'caller' }), services: [] })
    await thermo.start()
    await caller.start()
    try {
      const got: number[] = []
      for (const celsius of [19.4, 0, -40, 37, 21.5]) {
        now = celsius
        got.push((await caller.client(thermoContract).read({ unit: 'F' })).value)
      }
      expect(got).toEqual([66.9, 32, -40, 98.6, 70.7])
      expect((await caller.client(thermoContract).read({ unit: 'C' }))).toMatchObject({ unit: 'C' })
    } finally {
      await caller.stop()
      await thermo.stop()
    }
  })
})
