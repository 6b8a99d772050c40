// Small valibot building blocks for config files whose every error names the key and what is accepted.
import * as v from 'valibot'
import { isTopicSegment } from '../../runtime/topic-level.js'

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


/**
 * Why `filter` is not a filter over these named levels (`+` for one, a last `#` for the rest), or
 * undefined: `levels` names them, e.g. ['service', 'version', 'event']; `example` shows a good one.
 */
export function levelFilterProblem(filter: string, levels: readonly string[], example: string): string | undefined {
  const parts = filter.split('/')
  const shape = levels.map((l) => `<${l}>`).join('/')
  if (parts.length > levels.length) return `expected at most ${levels.length} levels: ${shape}`
  for (let i = 0; i < parts.length; i++) {
    const l = parts[i]!
    if (l === '+') continue
    if (l === '#') {
      if (i === parts.length - 1) continue
      return "'#' may only be the last level"
    }
    if (!isTopicSegment(l)) return `level ${i + 1} "${l}" is not a name`
  }
  if (parts.length < levels.length && parts[parts.length - 1] !== '#') return `expected ${levels.length} levels (${shape}) or a last '#', e.g. ${example}`
  return undefined
}
