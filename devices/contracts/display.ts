import * as v from 'valibot'
import { defineContract } from '../../runtime/index.js'

/** A small text display. */
export const displayContract = defineContract({
  name: 'display',
  version: '1',
  description: 'Shows short lines of text.',
  commands: {
    show: {
      description: 'Shows a line; answers how many lines were shown so far.',
      payload: v.object({ text: v.pipe(v.string(), v.maxLength(64)), level: v.optional(v.picklist(['info', 'alert']), 'info') }),
      result: v.object({ shown: v.literal(true), lines: v.pipe(v.number(), v.safeInteger(), v.minValue(0)) }),
    },
  },
})
