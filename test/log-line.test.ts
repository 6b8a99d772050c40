// The readable log format is read by a person at a terminal: nothing a client sends (a display's
// text, an event's fields) may move the cursor, clear the screen, recolour or start a new line.
import { describe, expect, it } from 'vitest'
import { formatLogLine } from '../runtime/log-line.js'

/** What a terminal acts on: C0 controls, DEL, C1 controls, line and paragraph separators, bidi controls. */
const CONTROLS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/

describe('formatLogLine', () => {
  const forged = '\u001b[2J\u001b[31mX\u001b[0m\n13:00:00.000 [thermo-1 ] FATAL fake'

  it('escapes control characters in the message and in every field value and key', () => {
    const hostile = ['\u001b[2J', '\r', '\u007f', '\u009b31m', '\u2028', '\u2029', '\u202e', '\u2066', '\u0000', forged]
    for (const s of hostile) {
      const line = formatLogLine(JSON.stringify({ level: 30, time: 0, device: 'display-9', msg: `display shows "${s}"`, text: s, nested: { from: s }, [`k${s}`]: 1 }))
      expect(line).not.toMatch(CONTROLS)
      expect(line).toContain('display shows')
    }
  })

  it('keeps a forged line on the line of the entry that carried it, its escape codes shown as text', () => {
    const line = formatLogLine(JSON.stringify({ level: 30, time: 0, device: 'display-9', msg: 'display shows', text: forged }))
    expect(line.split('\n')).toHaveLength(1)
    expect(line).toContain('\\x1b[2J')
    expect(line).toContain('\\n13:00:00.000 [thermo-1 ] FATAL fake')
  })

  it('escapes a line that is not JSON too', () => {
    expect(formatLogLine('crash: \u001b[2J')).toBe('crash: \\x1b[2J')
  })

  it('leaves ordinary text alone', () => {
    expect(formatLogLine(JSON.stringify({ level: 30, time: 0, device: 'd', msg: 'shows "21.4 °C" – ünïcode', text: 'a\\b' }))).toMatch(/shows "21\.4 °C" – ünïcode {2}text=a\\b$/)
  })
})
