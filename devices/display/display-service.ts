import { defineService } from '../../runtime/index.js'
import { displayContract } from '../contracts/display.js'
import { thermoContract } from '../contracts/thermo.js'

/** Display service: shows lines it is sent, keeps a running average of readings it hears, and follows the thermo's sampling jobs. */
export function createDisplayService() {
  let lines = 0
  let readings = 0
  let sum = 0
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
        readings++
        sum += celsius
        ctx.log.info({ celsius, from: deviceId, average: Math.round((sum / readings) * 10) / 10 }, 'heard a reading event')
      }),
      // The result events of the thermo's `sample` queue (its schedule → queue → worker chain).
      samples: s.on(thermoContract, 'sample.completed', ({ output, attempt }, ctx) => {
        const lateMs = Date.now() - output.at
        ctx.log.info({ slot: new Date(output.at).toISOString().slice(11, 19), celsius: output.celsius, readings: output.readings, attempt, ...(lateMs > 1_000 ? { deliveredLateMs: lateMs } : {}) }, 'heard a sample result')
      }),
    }),
  })
}
