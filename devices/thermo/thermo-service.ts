import * as v from 'valibot'
import { defineService, resource } from '../../runtime/index.js'
import { displayContract } from '../contracts/display.js'
import { thermoContract } from '../contracts/thermo.js'

/** Where readings come from (a real driver on hardware, a simulation in the demo). */
export interface TemperatureSensor {
  celsius(): number
}

/** A sensor that wanders around 21 °C. */
export function simulatedSensor(random: () => number = Math.random): TemperatureSensor {
  let t = 21
  return {
    celsius() {
      t = Math.min(35, Math.max(10, t + (random() - 0.5) * 1.5))
      return Math.round(t * 10) / 10
    },
  }
}

const Totals = v.object({ readings: v.number(), min: v.number(), max: v.number() })

/**
 * Thermo service. Every `sampleMs` its schedule emits `due`; the device turns each `due` into a
 * `sample` job (event-to-queue, exactly once per slot), whose worker reads the sensor, keeps the
 * totals in the device database, emits `reading` and tries to show it on a display. The job's
 * result goes out as `sample.completed`. Without a broker all of it goes on, and the events wait
 * in the outbox.
 */
export function createThermoService(opts: { deviceId: string; sampleMs: number }) {
  return defineService(thermoContract, {
    uses: [displayContract],
    resources: { sensor: resource<TemperatureSensor>() },
    // Kept in the device database: the totals survive a restart of the device.
    state: Totals,
    schedules: (s) => ({ sampling: s.every(opts.sampleMs, 'due', (o) => ({ at: o.at })) }),
    // Only this device's slots: another thermo device samples its own.
    bindings: (b) => ({ slots: b.event(thermoContract, 'due', 'sample', { device: opts.deviceId }) }),
    workers: {
      sample: async ({ at }, ctx) => {
        const celsius = ctx.resources.sensor.celsius()
        const before = ctx.state.get('totals')
        const totals = {
          readings: (before?.readings ?? 0) + 1,
          min: Math.min(before?.min ?? celsius, celsius),
          max: Math.max(before?.max ?? celsius, celsius),
        }
        ctx.state.set('totals', totals)
        await ctx.emit('reading', { deviceId: ctx.deviceId, celsius, ts: at })
        try {
          const shown = await ctx.service.display['1'].show({ text: `${celsius.toFixed(1)} °C`, level: celsius > 26 ? 'alert' : 'info' }, { timeoutMs: 1_000 })
          ctx.log.info({ celsius, lines: shown.lines, readingsEver: totals.readings }, 'reading shown on display')
        } catch (err) {
          ctx.log.warn({ code: (err as { code?: string }).code }, 'no display took the reading')
        }
        return { celsius, at, ...totals }
      },
    },
    commands: {
      read: async ({ unit }, ctx) => {
        const celsius = ctx.resources.sensor.celsius()
        const at = Date.now()
        await ctx.emit('reading', { deviceId: ctx.deviceId, celsius, ts: at })
        const value = unit === 'F' ? Math.round(((celsius * 9) / 5 + 32) * 10) / 10 : celsius
        return { value, unit, at }
      },
    },
  })
}
