// Log lines written synchronously to one file descriptor, never stopping the process for long on
// a pipe or socket nobody reads. The runtime's logger writes standard output with it (devices
// run from compiled code as from a bundle), and so does a device bundle's stand-in for pino's
// destination (build/stubs/sonic-boom.cjs).
//
// A full pipe (EAGAIN, EBUSY: the reader is slow, or stopped reading) is waited on for at most a
// second, not for ever as sonic-boom's synchronous mode does: a device whose log reader stalls
// must go on serving. Nor may a reader that is slow but never stops (a slow serial console, a
// terminal read 100 bytes at a time) hold the process back to its pace: over time, lines wait at
// most a tenth of the process's time. Past either limit, lines that find the pipe full are
// dropped at once and counted; the part of a line already written is finished first (no torn
// lines), and the first line that fits again is preceded by one saying how many were dropped
// (and so is the process's end, if it can be written then). A full disk under a log file
// (ENOSPC, EDQUOT) is taken the same way, without waiting: lines are dropped and counted until
// it has room again, and the one it cut short is finished first.
import { writeSync } from 'node:fs'

/** Writes whole lines to one descriptor. */
export interface LineWriter {
  /**
   * Writes one line (its end of line included; a JSON line for a writer with `shape`), waiting
   * on a full pipe for a second at most.
   * @returns false when the line was dropped or the write failed, true when it is out (or its end will follow)
   */
  write(line: string): boolean
  /** Finishes a line cut short by a full pipe, waiting as long as for any line. */
  finish(): void
}

const BUSY_WAIT_MS = 100
/** How long a line waits on a full pipe before lines are dropped. */
export const PATIENCE_MS = 1_000
/** Over time, the share of the process's time that lines may spend waiting (a budget of PATIENCE_MS at most, refilled at this rate). */
export const WAIT_SHARE = 0.1
// A JSON line's device field (pino writes the bindings before the message).
const DEVICE_FIELD = /"device":"(?:[^"\\]|\\.)*"/
let waitCell: Int32Array | undefined

/** Why lines were dropped, as the note says it. */
const WHY = {
  reader: 'the output was not read, or too slowly',
  disk: "the output's disk was full",
} as const

/** How a line writer writes its lines and its note of lines dropped. */
export interface LineWriterOptions {
  /** With `shape`, each line given is one JSON line, written as `shape` makes it (the readable form on a terminal), and so is the note. */
  shape?: (jsonLine: string) => string
  /** Whose lines the note counts (its `device` field); default: the device of the line it precedes. */
  who?: string
}

/**
 * Creates a writer of lines to `fd`. A failure other than a full pipe or disk (EPIPE: nobody
 * reads any more; EBADF; EIO) is handed to `failed` and that write answers false; the writer
 * stays usable. Lines are written as given, or shaped (LineWriterOptions).
 */
export function createLineWriter(fd: number, failed: (err: Error) => void, opts: LineWriterOptions = {}): LineWriter {
  const { shape, who } = opts
  // The rest of a line cut short by a full pipe, and how many lines were dropped since.
  let unfinished: Uint8Array | null = null
  let dropped = 0
  // Why the last line that did not go out did not.
  let why: keyof typeof WHY = 'reader'
  // What is left of the time lines may wait, as of `budgetAt` (WAIT_SHARE).
  let budget = PATIENCE_MS
  let budgetAt = 0

  /** Writes `bytes`, waiting on a full pipe up to `patienceMs` (and the budget): what is left of them, or null after an error. */
  const push = (bytes: Uint8Array, patienceMs: number): Uint8Array | null => {
    let rest = bytes
    let waited = 0
    let patience = -1
    try {
      while (rest.length > 0) {
        try {
          rest = rest.subarray(writeSync(fd, rest))
        } catch (err) {
          const code = (err as { code?: unknown }).code
          // A full disk: no room now, and waiting a second would rarely make any.
          if (code === 'ENOSPC' || code === 'EDQUOT') {
            why = 'disk'
            return rest
          }
          if (code !== 'EAGAIN' && code !== 'EBUSY') {
            failed(err as Error)
            return null
          }
          why = 'reader'
          if (patience < 0) {
            // This line's first wait: the budget, refilled for the time since it was last used.
            const now = performance.now() // monotonic: a clock step changes nothing
            budget = Math.min(PATIENCE_MS, budget + (now - budgetAt) * WAIT_SHARE)
            budgetAt = now
            patience = Math.min(patienceMs, budget)
          }
          if (waited + BUSY_WAIT_MS > patience) return rest
          Atomics.wait((waitCell ??= new Int32Array(new SharedArrayBuffer(4))), 0, 0, BUSY_WAIT_MS)
          waited += BUSY_WAIT_MS
        }
      }
      return rest
    } finally {
      budget -= waited
    }
  }

  /** Writes one line; false when it was dropped or failed, true when it is out (or its end will follow). */
  const line = (bytes: Uint8Array, patienceMs: number): boolean => {
    const rest = push(bytes, patienceMs)
    if (rest === null) return false
    if (rest.length === 0) return true
    // Cut short: finished before anything else. Not started: dropped.
    if (rest.length < bytes.length) {
      cutShort(rest)
      return true
    }
    dropped++
    onExit()
    return false
  }

  // At exit, a line cut short is finished, so that the last line a reader gets is whole, and the
  // lines dropped since the last note are counted, if the output takes it then.
  let atExit = false
  const onExit = (): void => {
    if (atExit) return
    atExit = true
    process.once('exit', () => {
      try {
        finish()
        if (unfinished === null && dropped > 0) push(noteOf(dropped, ''), 0)
      } catch {
        // The process ends anyway (a writer whose failure handler throws, its descriptor closed).
      }
    })
  }
  const cutShort = (rest: Uint8Array): void => {
    unfinished = rest
    onExit()
  }

  const finish = (): void => {
    if (unfinished === null) return
    const rest = push(unfinished, PATIENCE_MS)
    unfinished = rest !== null && rest.length > 0 ? rest : null
  }

  // Whose lines were dropped: `who`, else the device of the line the note precedes (a reader
  // shows whose lines went missing), else of the last line written.
  let lastDevice: string | undefined
  const noteOf = (n: number, data: string): Buffer => {
    const device = who !== undefined ? `"device":${JSON.stringify(who)}` : (DEVICE_FIELD.exec(data)?.[0] ?? lastDevice)
    const json = `{"level":40,"time":${Date.now()},${device === undefined ? '' : `${device},`}"msg":"${n} log line${n === 1 ? '' : 's'} dropped: ${WHY[why]}"}`
    return Buffer.from(`${shape === undefined ? json : shape(json)}\n`)
  }

  const write = (data: string): boolean => {
    const bytes = Buffer.from(shape === undefined ? data : `${shape(data.trimEnd())}\n`, 'utf8')
    if (unfinished !== null) {
      const rest = push(unfinished, 0)
      if (rest === null) return false
      unfinished = rest.length > 0 ? rest : null
      if (unfinished !== null) {
        dropped++
        return true
      }
    }
    if (dropped === 0) {
      const out = line(bytes, PATIENCE_MS)
      if (dropped > 0 && who === undefined) lastDevice = DEVICE_FIELD.exec(data)?.[0]
      return out
    }
    if (who === undefined) lastDevice = DEVICE_FIELD.exec(data)?.[0] ?? lastDevice
    const note = noteOf(dropped, data)
    const rest = push(note, 0)
    if (rest === null) return false
    // Still full: the note waits, and this line is dropped too.
    if (rest.length === note.length) {
      dropped++
      return true
    }
    dropped = 0
    // The note is cut short: finished before anything else, and this line is dropped.
    if (rest.length > 0) {
      cutShort(rest)
      dropped = 1
      return true
    }
    return line(bytes, 0)
  }

  return { write, finish }
}
