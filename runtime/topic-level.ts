import { ErrorCode, OutpostError } from './errors.js'

// What may be one topic level. A leaf module (it imports only errors.ts), so contracts, which
// name services and versions that become topic levels, check them without importing the wire
// layer, and the wire layer checks envelopes with the very same rule.

/** Longest string (in UTF-16 code units) that may be one topic level. */
export const MAX_TOPIC_LEVEL_LENGTH = 128

/** The rule, as error messages state it. */
export const TOPIC_LEVEL_RULE = `1 to ${MAX_TOPIC_LEVEL_LENGTH} characters, no '/', '+', '#' or control characters`

/**
 * True when `s` can be one topic level: 1 to 128 characters, no `/`, `+`, `#`, no control
 * characters (U+0000–U+001F, U+007F–U+009F: MQTT forbids U+0000 and Mosquitto disconnects a
 * client that sends the others), no surrogates and no non-characters (U+FDD0–U+FDEF, U+FFFE,
 * U+FFFF). A loop over char codes: most characters cost two comparisons.
 */
export function isTopicSegment(s: string): boolean {
  const n = s.length
  if (n === 0 || n > MAX_TOPIC_LEVEL_LENGTH) return false
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x30) {
      if (c < 0x20 || c === 0x23 || c === 0x2b || c === 0x2f) return false // control, '#', '+', '/'
    } else if (c >= 0x7f && (c <= 0x9f || (c >= 0xd800 && c <= 0xdfff) || (c >= 0xfdd0 && c <= 0xfdef) || c >= 0xfffe)) {
      return false
    }
  }
  return true
}

/** Checks a configured name that becomes a topic level (device id, service version, prefix). @throws INVALID_CONFIG when `s` cannot be a topic level */
export function assertTopicSegment(what: string, s: string): void {
  if (!isTopicSegment(s)) {
    throw new OutpostError(ErrorCode.INVALID_CONFIG, `${what} "${s.slice(0, MAX_TOPIC_LEVEL_LENGTH)}" cannot be a topic level (${TOPIC_LEVEL_RULE})`)
  }
}
