// The readable form of a pino JSON line, for a person at a terminal. Small on purpose: device
// bundles carry it, so it is a few lines rather than pino-pretty and its dependencies.

/** Fields every line has, or that only repeat what the prefix already says; left out of the readable form. */
const SKIP = new Set(['level', 'time', 'pid', 'hostname', 'msg', 'device', 'service', 'version', 'msgId', 'bridge'])

const LABELS: Record<number, string> = { 10: 'TRACE ', 20: 'DEBUG ', 40: 'WARN ', 50: 'ERROR ', 60: 'FATAL ' }

const pad2 = (n: number): string => String(n).padStart(2, '0')

/**
 * What a terminal acts on rather than shows: C0 controls (escape sequences, new lines), DEL, C1
 * controls (U+009B is a one-character CSI), the line and paragraph separators, and the bidi
 * controls that reorder what follows them (Trojan Source, CVE-2021-42574).
 */
const CONTROLS = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g

const escapeOne = (c: string): string => {
  const n = c.charCodeAt(0)
  if (c === '\n') return '\\n'
  if (c === '\r') return '\\r'
  if (c === '\t') return '\\t'
  return n < 0x100 ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16).padStart(4, '0')}`
}

/** Text with every control character written as an escape (`\x1b`, `\n`, `\u202e`), so it reads as what it is. */
const escapeControls = (s: string): string => s.replace(CONTROLS, escapeOne)

/** A value as it reads after `key=`: strings bare, errors by their message, the rest as JSON. */
function show(key: string, value: unknown): string {
  if (typeof value === 'string') return value
  if (key === 'err' && typeof value === 'object' && value !== null) {
    const e = value as { type?: unknown; code?: unknown; message?: unknown }
    return `${String(e.type ?? 'Error')}${e.code === undefined ? '' : ` ${String(e.code)}`}: ${String(e.message ?? '')}`
  }
  return JSON.stringify(value) ?? String(value)
}

/**
 * Turns one pino JSON line into one readable line, `HH:MM:SS.mmm [device   ] LEVEL msg  key=value …`
 * (info has no level label); a line that is not a JSON object comes back as it is. Either way
 * control characters come back escaped: a message or a field may hold text any client sent
 * (a display's text, an event's fields), and it must not clear the screen or forge a line.
 */
export function formatLogLine(line: string): string {
  let o: Record<string, unknown>
  try {
    const parsed: unknown = JSON.parse(line)
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return escapeControls(line)
    o = parsed as Record<string, unknown>
  } catch {
    return escapeControls(line)
  }
  const extra = Object.entries(o)
    // A rate-limited line standing for itself alone says nothing more with `count=1`.
    .filter(([k, value]) => !SKIP.has(k) && !(k === 'count' && value === 1 && o.reason !== undefined))
    .map(([k, value]) => `${k}=${show(k, value)}`)
    .join(' ')
  const t = typeof o.time === 'number' ? new Date(o.time) : undefined
  const time = t === undefined ? '' : `${pad2(t.getHours())}:${pad2(t.getMinutes())}:${pad2(t.getSeconds())}.${String(t.getMilliseconds()).padStart(3, '0')} `
  const level = LABELS[Number(o.level)] ?? ''
  // Escaped whole: the message, the device, every key and value (JSON.stringify leaves C1, U+2028 and bidi controls as they are).
  return escapeControls(`${time}[${String(o.device ?? '?').padEnd(9)}] ${level}${String(o.msg ?? '')}${extra ? `  ${extra}` : ''}`)
}
