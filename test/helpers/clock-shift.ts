// A device whose wall clock is wrong and jumps, made from outside: a preload (node --import) that
// offsets Date by the number of ms in the file $CLOCK_OFFSET_FILE names, re-read every 20 ms, so a
// test moves the clock of a running process by rewriting the file. Timers and performance.now
// keep real time, as on a device with no battery-backed clock, a dead RTC battery, or an NTP sync.
import { writeFileSync } from 'node:fs'
import path from 'node:path'

const PRELOAD = `
import { readFileSync } from 'node:fs'
const file = process.env.CLOCK_OFFSET_FILE
let offset = 0
const read = () => {
  try {
    const n = Number(readFileSync(file, 'utf8').trim())
    if (Number.isFinite(n)) offset = n
  } catch {}
}
read()
setInterval(read, 20).unref()
const RealDate = Date
const realNow = RealDate.now.bind(RealDate)
class ShiftedDate extends RealDate {
  constructor(...args) {
    if (args.length === 0) super(realNow() + offset)
    else super(...args)
  }
  static now() {
    return realNow() + offset
  }
}
globalThis.Date = ShiftedDate
`

/** Writes the preload into `dir`; pass `--import=<the path returned>` in NODE_OPTIONS and CLOCK_OFFSET_FILE in the environment. */
export function writeClockShiftPreload(dir: string): string {
  const file = path.join(dir, 'clock-shift.mjs')
  writeFileSync(file, PRELOAD)
  return file
}

/** Sets the clock of the processes reading `offsetFile` `offsetMs` off the real time. */
export const setClockOffset = (offsetFile: string, offsetMs: number): void => writeFileSync(offsetFile, String(offsetMs))
