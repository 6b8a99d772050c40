import * as v from 'valibot'
import { defineContract } from '../../runtime/index.js'

// Numbers that are measurements are checked as such: a reading of Infinity or NaN, or a time no
// Date can hold, is refused where it arrives, not carried into every receiver's arithmetic.
/** A temperature in °C: finite, not below absolute zero. */
const Celsius = v.pipe(v.number(), v.finite(), v.minValue(-273.15))
/** A point in time, epoch ms: a whole number a Date can hold (±8.64e15 ms), from 1970 on. */
const EpochMs = v.pipe(v.number(), v.safeInteger(), v.minValue(0), v.maxValue(8.64e15))
/** How many readings: a whole number, 0 or more. */
const Count = v.pipe(v.number(), v.safeInteger(), v.minValue(0))

/** A temperature sensor. */
export const thermoContract = defineContract({
  name: 'thermo',
  version: '1',
  description: 'Reads a temperature sensor and reports readings.',
  commands: {
    read: {
      description: 'Takes one reading now and emits it as a `reading` event.',
      payload: v.object({ unit: v.optional(v.picklist(['C', 'F']), 'C') }),
      result: v.object({ value: v.pipe(v.number(), v.finite()), unit: v.picklist(['C', 'F']), at: EpochMs }),
    },
  },
  events: {
    reading: v.object({ deviceId: v.string(), celsius: Celsius, ts: EpochMs }),
    /** A sampling slot fell due (emitted by the schedule; each becomes a `sample` job). */
    due: v.object({ at: EpochMs }),
  },
  queues: {
    sample: {
      description: 'Takes the reading of one sampling slot, keeps the totals, shows it on a display if one is there.',
      payload: v.object({ at: EpochMs }),
      result: v.object({ celsius: Celsius, at: EpochMs, readings: Count, min: Celsius, max: Celsius }),
      // A slot's reading is worth little an hour later: give up after a minute of retries.
      maxAttempts: 5,
      retryWindowMs: 60_000,
      backoff: { initialMs: 500, maxMs: 10_000 },
    },
  },
})
