// One logging setup for every entry point (the CLI's demo, gateway and device commands, and
// device processes started on their own): pino underneath, readable lines on a terminal, JSON
// lines when the output is piped or when asked.
import { pino, type LevelWithSilent, type Logger } from 'pino'
import { ErrorCode, OutpostError } from './errors.js'
import { formatLogLine } from './log-line.js'
import { outputFd, outputLines } from './output-fd.js'

/** How log lines are written: `json` (pino's JSON object a line) or `pretty` (one readable line each). */
export type LogFormat = 'json' | 'pretty'

/** The formats OUTPOST_LOG_FORMAT and `--log-format` accept. */
export const LOG_FORMATS: readonly LogFormat[] = ['json', 'pretty']

/** The levels OUTPOST_LOG_LEVEL and `--log-level` accept (pino's). */
export const LOG_LEVELS: readonly LevelWithSilent[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

/** What a root logger is for: whose lines, from which level, in which format, to where. */
export interface LoggerOptions {
  /** Written on every line as `device`: a device id, `gateway`, `demo`. */
  name: string
  /** One of LOG_LEVELS (default `info`). */
  level?: string
  /** Default: `pretty` when `out` is a terminal, `json` otherwise. */
  format?: LogFormat
  /**
   * Where the lines go (default process.stdout). A stream's 'error' (EPIPE: nobody reads any
   * more; ENOSPC) turns the lines off; the process goes on.
   */
  out?: { write(s: string): unknown; isTTY?: boolean; on?(event: 'error', listener: (err: Error) => void): unknown }
}

/** A log level from a flag or a variable, checked. @throws BAD_ARGUMENT naming `where` when it is not one of LOG_LEVELS */
export function parseLogLevel(value: string, where: string): LevelWithSilent {
  const level = LOG_LEVELS.find((l) => l === value)
  if (level === undefined) throw new OutpostError(ErrorCode.BAD_ARGUMENT, `${where} "${value}" is not a log level; expected one of ${LOG_LEVELS.join(', ')}`)
  return level
}

/** A log format from a flag or a variable, checked. @throws BAD_ARGUMENT naming `where` when it is not one of LOG_FORMATS */
export function parseLogFormat(value: string, where: string): LogFormat {
  const format = LOG_FORMATS.find((f) => f === value)
  if (format === undefined) throw new OutpostError(ErrorCode.BAD_ARGUMENT, `${where} "${value}" is not a log format; expected one of ${LOG_FORMATS.join(', ')}`)
  return format
}

/**
 * Creates a root logger: pino at the given level, each line carrying `device: name`, written as
 * JSON or as readable lines (see LoggerOptions.format).
 * @throws BAD_ARGUMENT for a level that is not one of LOG_LEVELS
 */
export function createLogger(opts: LoggerOptions): Logger {
  const level = parseLogLevel(opts.level ?? 'info', 'log level')
  const format = opts.format ?? ((opts.out === undefined ? outputFd(1).terminal : opts.out.isTTY === true) ? 'pretty' : 'json')
  const options = { level, base: { device: opts.name } }
  if (opts.out !== undefined) {
    const write = writerTo(opts.out)
    return pino(options, { write: format === 'pretty' ? (s: string) => write(`${formatLogLine(s.trimEnd())}\n`) : write })
  }
  // Lines to descriptor 1, without process.stdout: Node makes that stream at its first use, and
  // for a socket or a pipe (a device under its launcher) that loads node:net and Node's streams,
  // 2 ms of a start measured here (a fifth of what a device adds to a bare Node's); and on a
  // terminal its writes wait for ever once the terminal stops taking them. Something that
  // replaces process.stdout.write does not see these lines: give `out` to capture them.
  return pino(options, { write: stdoutLines(format, opts.name) })
}

/**
 * Writes lines to `out` until it fails: a stream that cannot be written any more (its reader
 * gone, its disk full, a descriptor opened read-only) emits 'error', which unhandled would end
 * the process (a gateway whose log reader died). Lines are dropped from then on.
 */
function writerTo(out: NonNullable<LoggerOptions['out']>): (s: string) => void {
  let broken = false
  out.on?.('error', () => {
    broken = true
  })
  return (s) => {
    if (broken) return
    try {
      out.write(s)
    } catch {
      broken = true
    }
  }
}

const stdoutWriters = new Map<LogFormat, (jsonLine: string) => void>()

/**
 * Writes one JSON log line (its end of line included) to standard output in `format` (`pretty`:
 * its readable form), as the root loggers without `out` write theirs: one writer per format and
 * process, so that lines of several loggers (the demo's, and the device lines it passes on) never
 * tear one another. A note of lines dropped carries `who` of the first call (the process's first
 * root logger's name: all lines of the process are counted together).
 *
 * Written synchronously (runtime/log-writer.ts), as Node itself writes process.stdout to pipes,
 * files and terminals on Linux, but never waiting long. Not pino's default destination
 * (sonic-boom): asynchronously, its flush at exit (sonic-boom 4) tried a failed write again for
 * ever, whatever the error, so a process whose reader had gone (a device whose parent was killed
 * with SIGKILL: EPIPE) never finished exiting; synchronously, it waits on a full pipe for ever, and
 * a device run from compiled code stopped as soon as its log reader stalled. Nor process.stdout:
 * on a terminal that stopped taking output it waits for ever too (a device ignored SIGTERM), and
 * on a pipe it keeps in memory what the reader has not taken, without bound (a gateway whose log
 * reader hung). This one waits a second at most (and, over time, a tenth of the
 * process's time on a slow reader), then drops lines and counts them. A write that
 * fails for good (EPIPE: nobody reads any more; EBADF) turns it off; on a full disk (ENOSPC) lines
 * are dropped and counted until it has room again, none torn. The process goes on.
 */
export function stdoutLines(format: LogFormat, who?: string): (jsonLine: string) => void {
  let write = stdoutWriters.get(format)
  if (write === undefined) {
    write = outputLines(1, { shape: format === 'pretty' ? formatLogLine : undefined, who })
    stdoutWriters.set(format, write)
  }
  return write
}
