// Caller-given text (a device or command name, a path, a query key) in error messages. Messages
// end up in terminals and log viewers: a name holding U+202E (right-to-left override) was echoed
// raw in NO_HANDLER's message and turned the rest of the line around, and zero-width or other
// invisible characters make two different names read the same. JSON.stringify escapes only
// controls, quotes and backslashes, so the characters below are escaped as well.

/**
 * What is written as `\uXXXX`: controls, format characters (bidi controls, zero-width ones, the
 * BOM, tag characters), surrogates, private-use and unassigned code points, line and paragraph
 * separators, and every white space but the plain space (U+00A0, U+3000, … look like one).
 */
const UNSEEN = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}]|[^\S ]/gu

/** Each UTF-16 code unit of `ch` as a JSON escape (an astral character as its surrogate pair). */
const escape = (ch: string): string => Array.from({ length: ch.length }, (_, i) => `\\u${ch.charCodeAt(i).toString(16).padStart(4, '0')}`).join('')

/** `s` (its first `max` code units) as a JSON string whose every character shows for what it is. */
export function quoted(s: string, max = 128): string {
  return JSON.stringify(s.slice(0, max)).replace(UNSEEN, escape)
}

/** `s` as it is when every character of it shows for what it is (no quote or backslash either), else quoted. */
export function shown(s: string, max = 128): string {
  const t = s.slice(0, max)
  UNSEEN.lastIndex = 0
  return UNSEEN.test(t) || /["\\]/.test(t) ? quoted(t, max) : t
}
