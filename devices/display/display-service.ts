import { defineService } from '../../runtime/index.js'
import { displayContract } from '../contracts/display.js'
import { thermoContract } from '../contracts/thermo.js'

/** `HH:MM:SS` (UTC) of an epoch-ms time, or undefined for one no Date can hold. */
function clockOf(at: number): string | undefined {
  const d = new Date(at)
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString().slice(11, 19)
}

/** Display service: shows lines it is sent, keeps a running average of readings it hears, and follows the thermo's sampling jobs. */
export function createDisplayService() {
  let lines = 0
  let readings = 0
  // A running mean, not a sum: finite readings (the contract's) keep it finite however many there are.
  let mean = 0
  return defineService(displayContract, {
    commands: {
      show: ({ text, level }, ctx) => {
        lines++
        ctx.log.info({ text, level, from: ctx.caller.device }, `display shows "${text}"`)
        return { shown: true as const, lines }
      },
    },
    subscriptions: (s) => ({
      readings: s.on(thermoContract, 'reading', ({ celsius, deviceId }, ctx) => {
        const next = mean + (celsius - mean) / (readings + 1)
        // The contract admits finite readings only; should one still not add up, it is not taken into the average.
        if (!Number.isFinite(next)) return void ctx.log.warn({ from: deviceId }, 'reading left out of the average: not a finite number')
        readings++
        mean = next
        ctx.log.info({ celsius, from: deviceId, average: Math.round(mean * 10) / 10 }, 'heard a reading event')
      }),
      // The result events of the thermo's `sample` queue (its schedule → queue → worker chain).
      samples: s.on(thermoContract, 'sample.completed', ({ output, attempt }, ctx) => {
        const lateMs = Date.now() - output.at
        ctx.log.info({ slot: clockOf(output.at), celsius: output.celsius, readings: output.readings, attempt, ...(lateMs > 1_000 ? { deliveredLateMs: lateMs } : {}) }, 'heard a sample result')
      }),
    }),
  })
}
