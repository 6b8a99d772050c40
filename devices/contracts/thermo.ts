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
    /** A sampling slot fell due (emitted by the schedule; each becomes a `sample` job). */
    due: v.object({ at: v.number() }),
  },
  queues: {
    sample: {
      description: 'Takes the reading of one sampling slot, keeps the totals, shows it on a display if one is there.',
      payload: v.object({ at: v.number() }),
      result: v.object({ celsius: v.number(), at: v.number(), readings: v.number(), min: v.number(), max: v.number() }),
      // A slot's reading is worth little an hour later: give up after a minute of retries.
      maxAttempts: 5,
      retryWindowMs: 60_000,
      backoff: { initialMs: 500, maxMs: 10_000 },
    },
  },
})
