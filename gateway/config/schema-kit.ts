// Small valibot building blocks for config files whose every error names the key and what is accepted.
import * as v from 'valibot'

/** An object that takes only these keys; an unknown one is named with the keys accepted there. */
export function strict<E extends v.ObjectEntries>(entries: E) {
  const keys = Object.keys(entries).join(', ')
  return v.strictObject(entries, (issue) => {
    if (issue.expected === 'never') return `unknown key; expected one of ${keys}`
    if (issue.path !== undefined && issue.received === 'undefined') return 'missing; this key is required'
    return `expected a mapping with the keys ${keys}`
  })
}

export function wholeNumber(min: number, max: number, note = '') {
  const msg = `expected a whole number from ${min} to ${max}${note}`
  return v.pipe(v.number(msg), v.integer(msg), v.minValue(min, msg), v.maxValue(max, msg))
}

