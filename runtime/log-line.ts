// The readable form of a pino JSON line, for a person at a terminal. Small on purpose: device
// bundles carry it, so it is a few lines rather than pino-pretty and its dependencies.

/** Fields every line has, or that only repeat what the prefix already says; left out of the readable form. */
const SKIP = new Set(['level', 'time', 'pid', 'hostname', 'msg', 'device', 'service', 'version', 'msgId', 'bridge'])

const LABELS: Record<number, string> = { 10: 'TRACE ', 20: 'DEBUG ', 40: 'WARN ', 50: 'ERROR ', 60: 'FATAL ' }

const pad2 = (n: number): string => String(n).padStart(2, '0')

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
 * (info has no level label); a line that is not a JSON object comes back unchanged.
 */
export function formatLogLine(line: string): string {
  let o: Record<string, unknown>
  try {
    const parsed: unknown = JSON.parse(line)
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return line
    o = parsed as Record<string, unknown>
  } catch {
    return line
  }
  const extra = Object.entries(o)
    // A rate-limited line standing for itself alone says nothing more with `count=1`.
    .filter(([k, value]) => !SKIP.has(k) && !(k === 'count' && value === 1 && o.reason !== undefined))
    .map(([k, value]) => `${k}=${show(k, value)}`)
    .join(' ')
  const t = typeof o.time === 'number' ? new Date(o.time) : undefined
  const time = t === undefined ? '' : `${pad2(t.getHours())}:${pad2(t.getMinutes())}:${pad2(t.getSeconds())}.${String(t.getMilliseconds()).padStart(3, '0')} `
  const level = LABELS[Number(o.level)] ?? ''
  return `${time}[${String(o.device ?? '?').padEnd(9)}] ${level}${String(o.msg ?? '')}${extra ? `  ${extra}` : ''}`
}
