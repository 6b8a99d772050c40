import * as v from 'valibot'
import { defineContract } from '../../runtime/index.js'

/** A temperature sensor. */
export const thermoContract = defineContract({
  name: 'thermo',
  version: '1',
  description: 'Reads a temperature sensor and reports readings.',
  commands: {
    read: {
      description: 'Takes one reading now and emits it as a `reading` event.',
      payload: v.object({ unit: v.optional(v.picklist(['C', 'F']), 'C') }),
      result: v.object({ value: v.number(), unit: v.picklist(['C', 'F']), at: v.number() }),
    },
  },
  events: {
    reading: v.object({ deviceId: v.string(), celsius: v.number(), ts: v.number() }),
  },
})
