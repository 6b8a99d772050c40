// Two "devices" in one process on the memory bridge: a command, an event, a typed proxy.
import * as v from 'valibot'
import { createMemoryBridge, createMemoryHub } from 'outpost/bridges'
import { defineContract, defineService, resource } from 'outpost/contracts'
import { createRuntime } from 'outpost/runtime'

// Contracts are shared by the device that implements a service and by every caller.
const display = defineContract({
  name: 'display',
  version: '1',
  commands: { show: { payload: v.object({ text: v.string() }), result: v.object({ shown: v.boolean() }) } },
})
const thermo = defineContract({
  name: 'thermo',
  version: '1',
  commands: {
    read: { payload: v.object({ unit: v.picklist(['C', 'F']) }), result: v.object({ value: v.number() }) },
  },
  events: { reading: v.object({ celsius: v.number() }) },
})

interface Sensor {
  celsius(): number
}

const thermoService = defineService(thermo, {
  uses: [display], // gives the typed proxy ctx.service.display['1']
  resources: { sensor: resource<Sensor>() },
  commands: {
    read: async ({ unit }, ctx) => {
      const celsius = ctx.resources.sensor.celsius()
      await ctx.emit('reading', { celsius })
      await ctx.service.display['1'].show({ text: `${celsius} °C` })
      return { value: unit === 'C' ? celsius : celsius * 1.8 + 32 }
    },
  },
})

const displayService = defineService(display, {
  commands: {
    show: ({ text }) => {
      console.log(`display: ${text}`)
      return { shown: true }
    },
  },
  subscriptions: (s) => ({
    readings: s.on(thermo, 'reading', ({ celsius }, ctx) => console.log(`display heard a reading from ${ctx.event.device}: ${celsius}`)),
  }),
})

const hub = createMemoryHub() // swap for createMqttBridge({ url, deviceId }) (outpost/bridges) to go across devices
const sensorDevice = createRuntime({
  bridge: createMemoryBridge({ hub, deviceId: 'sensor-1' }),
  services: [thermoService],
  resources: { sensor: { celsius: () => 21.5 } },
})
const panel = createRuntime({ bridge: createMemoryBridge({ hub, deviceId: 'panel-1' }), services: [displayService] })
await panel.start()
await sensorDevice.start()

const result = await panel.client(thermo).read({ unit: 'F' })
console.log(`panel got ${result.value} °F`)
try {
  await panel.invoke({ service: 'thermo', command: 'read' }, { unit: 'K' })
} catch (err) {
  console.log(`bad payload: ${(err as { code: string }).code}`)
}
await sensorDevice.stop()
await panel.stop()
