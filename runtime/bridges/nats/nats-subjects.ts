import { ErrorCode, OutpostError } from '../../errors.js'

/**
 * MQTT topics ↔ NATS subjects, for the NATS bridge.
 *
 * A topic level becomes a subject token (`a/b/c` ↔ `a.b.c`), so an ordinary Outpost topic
 * (`ob/dev-1/cmd/dev-2/counter/1/add`) is the same subject an MQTT client of nats-server's MQTT
 * listener would use. NATS cannot carry some levels as they are: a token may not hold `.` or
 * white space, may not be empty, and a token `*` or `>` is a wildcard. Such levels are escaped
 * with `%XX` (the character's code, two hex digits; `%` itself is escaped too, so every escape
 * round-trips), and an empty level becomes the token `%` alone, which no escaped level can be.
 * Levels that need no escape map to themselves, so the mapping costs nothing on ordinary topics.
 * A level this scheme cannot carry (a character above U+00FF among the escaped ones never
 * occurs: only ASCII characters are escaped) does not exist; a topic or filter MQTT itself
 * forbids (`+`/`#` inside a level, `#` not last) is refused with INVALID_TOPIC_LEVEL.
 */

/** Characters a subject token cannot hold as they are (`%` is the escape itself). */
const NEEDS_ESCAPE = /[%.*>\s]/

const hex2 = (c: number): string => c.toString(16).toUpperCase().padStart(2, '0')

/** One topic level as one subject token (see the module doc). */
export function escapeLevel(level: string): string {
  if (level.length === 0) return '%'
  if (!NEEDS_ESCAPE.test(level)) return level
  let out = ''
  for (const ch of level) {
    const c = ch.codePointAt(0)!
    // Only ASCII characters are ever escaped; white space beyond ASCII (U+00A0, U+2028…) too.
    out += NEEDS_ESCAPE.test(ch) ? (c < 0x100 ? `%${hex2(c)}` : `%u${c.toString(16).toUpperCase().padStart(4, '0')};`) : ch
  }
  return out
}

/** The topic level a subject token stands for. @throws INVALID_TOPIC_LEVEL for a malformed escape */
export function unescapeLevel(token: string): string {
  if (token === '%') return ''
  if (!token.includes('%')) return token
  let out = ''
  for (let i = 0; i < token.length; i++) {
    const ch = token[i]!
    if (ch !== '%') {
      out += ch
      continue
    }
    if (token[i + 1] === 'u') {
      const end = token.indexOf(';', i)
      const code = end < 0 ? NaN : parseInt(token.slice(i + 2, end), 16)
      if (!Number.isFinite(code)) throw badToken(token)
      out += String.fromCodePoint(code)
      i = end
      continue
    }
    const code = parseInt(token.slice(i + 1, i + 3), 16)
    if (!/^[0-9A-Fa-f]{2}$/.test(token.slice(i + 1, i + 3)) || !Number.isFinite(code)) throw badToken(token)
    out += String.fromCharCode(code)
    i += 2
  }
  return out
}

const badToken = (token: string): OutpostError =>
  new OutpostError(ErrorCode.INVALID_TOPIC_LEVEL, `subject token "${token.slice(0, 128)}" holds a malformed escape`, { details: { token: token.slice(0, 128) } })

const badTopic = (what: string, topic: string, why: string): OutpostError =>
  new OutpostError(ErrorCode.INVALID_TOPIC_LEVEL, `${what} "${topic.slice(0, 256)}" cannot be carried over NATS: ${why}`, { details: { topic: topic.slice(0, 256) } })

/** Splits a subject prefix option (`""`, `"site1"`, `"site1.edge"`) into its tokens. */
export function prefixTokens(prefix: string | undefined): string[] {
  if (prefix === undefined || prefix === '') return []
  const tokens = prefix.split('.')
  if (tokens.some((t) => t.length === 0 || /[\s*>]/.test(t))) {
    throw new OutpostError(ErrorCode.INVALID_CONFIG, `subject prefix "${prefix.slice(0, 128)}" is not a literal NATS subject`)
  }
  return tokens
}

/** The subject of a topic (no wildcards). @throws INVALID_TOPIC_LEVEL for an empty topic or one holding `+` or `#` */
export function topicToSubject(topic: string, prefix: readonly string[] = []): string {
  if (topic.length === 0) throw badTopic('topic', topic, 'it is empty')
  const levels = topic.split('/')
  if (levels.some((l) => l.includes('+') || l.includes('#'))) throw badTopic('topic', topic, "a topic holds no '+' or '#'")
  return [...prefix, ...levels.map(escapeLevel)].join('.')
}

/** Characters no token of a frame subject holds: `/` separates levels, `+` and `#` are MQTT's wildcards. */
const NEVER_IN_TOKEN = /[/+#]/
/** Marks a token that needs a closer look: an escape, or a character no token holds. */
const SUSPECT = /[%/+#]/

/**
 * The topic level a token of an inbound subject stands for, or undefined when no topic maps to
 * that token: a character no level holds (`a/b` would be two levels), or an escape `escapeLevel`
 * never writes (`%2F` for `/`, `%23` for `#`, `%41` for `A`, lower-case hex, a malformed one).
 * Every topic has exactly one subject, so a frame's topic matches the filter its subject matched.
 */
function levelOf(token: string): string | undefined {
  if (!SUSPECT.test(token)) return token
  if (NEVER_IN_TOKEN.test(token)) return undefined
  let level: string
  try {
    level = unescapeLevel(token)
  } catch {
    return undefined
  }
  return !NEVER_IN_TOKEN.test(level) && escapeLevel(level) === token ? level : undefined
}

/**
 * The topic a subject stands for, or undefined when it is outside `prefix` or is no subject
 * `topicToSubject` writes (a malformed or needless escape, a token holding `/`, `+` or `#`):
 * another client can publish such a subject, and its decoded topic would not match the filter
 * whose subscription received it.
 */
export function subjectToTopic(subject: string, prefix: readonly string[] = []): string | undefined {
  const tokens = subject.split('.')
  if (tokens.length <= prefix.length) return undefined
  for (let i = 0; i < prefix.length; i++) if (tokens[i] !== prefix[i]) return undefined
  if (!SUSPECT.test(subject)) return prefix.length === 0 ? tokens.join('/') : tokens.slice(prefix.length).join('/')
  const levels: string[] = []
  for (let i = prefix.length; i < tokens.length; i++) {
    const level = levelOf(tokens[i]!)
    if (level === undefined) return undefined
    levels.push(level)
  }
  return levels.join('/')
}

/**
 * The subjects an MQTT filter covers: `+` → `*`, a trailing `#` → `>`. MQTT's `a/#` also matches
 * `a` itself [MQTT-4.7.1-2], which NATS's `a.>` does not, so that filter takes two subjects
 * (`a` and `a.>`); they never overlap, so no frame comes twice.
 * @throws INVALID_TOPIC_LEVEL for a filter MQTT forbids (`#` not last, `+`/`#` inside a level)
 */
export function filterToSubjects(filter: string, prefix: readonly string[] = []): string[] {
  if (filter.length === 0) throw badTopic('filter', filter, 'it is empty')
  const levels = filter.split('/')
  const tokens: string[] = [...prefix]
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i]!
    if (l === '#') {
      if (i !== levels.length - 1) throw badTopic('filter', filter, "'#' must be the last level")
      const gt = [...tokens, '>'].join('.')
      return tokens.length === 0 ? [gt] : [tokens.join('.'), gt]
    }
    if (l === '+') tokens.push('*')
    else if (l.includes('+') || l.includes('#')) throw badTopic('filter', filter, "'+' and '#' stand for a whole level")
    else tokens.push(escapeLevel(l))
  }
  return [tokens.join('.')]
}

/**
 * True when a subject delivered to a filter's subscription starts with a level MQTT's wildcards
 * never match: `$…` topics [MQTT-4.7.2-1] (NATS's own `$JS`, `$SYS` traffic) and `_INBOX…`
 * (NATS request/reply inboxes), which a bare `>` subscription would otherwise hand over as frames.
 */
export function isSystemSubject(subject: string, prefix: readonly string[]): boolean {
  if (prefix.length > 0) return false
  return subject.startsWith('$') || subject.startsWith('_INBOX.') || subject.startsWith('_outpost.')
}
