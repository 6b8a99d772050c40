// Which descriptor a process writes its standard output or error to, so that a write to a pipe,
// socket or terminal nobody takes output from fails at once (EAGAIN) instead of stopping the
// process: the line writer (log-writer.ts) then waits a second at most and drops lines. Used by
// the runtime's logger and by the device launcher, which must never stop with its terminal.
// No dependencies beyond Node's own modules: the launcher is a small file of its own.
import { constants, fstatSync, openSync, writeSync } from 'node:fs'
import { builtin } from './lazy-builtin.js'
import { legacyBinding } from './legacy-binding.js'
import { createLineWriter, type LineWriterOptions } from './log-writer.js'

/** A descriptor to write lines of output to. */
export interface OutputFd {
  fd: number
  /** True when the descriptor is a terminal (asked only of a character device: node:tty loads node:net). */
  terminal: boolean
  /** Why writes to it may wait for as long as its reader does (a terminal this process may not open again); undefined when they never wait long. */
  blocking?: string
}

/**
 * fstat's answer in BigInts, kept apart from the numbers of Node's other stat calls. Node 20's
 * fs.realpathSync reads the last numeric stat's file type to stop at a pipe or socket: after a
 * numeric fstat of a pipe or socket on descriptor 1, it stopped at the first folder it knew and
 * gave back a symlinked package's path unresolved, so a package installed as a symlink (npm link,
 * a workspace) could not find its own dependencies (MQTT.js: "Cannot find module 'mqtt-packet'").
 */
const BIGINT = { bigint: true } as const

const EMPTY = new Uint8Array(0)

/**
 * Chooses, without making process.stdout or process.stderr (for a socket or a pipe, Node's stream
 * loads node:net and its streams: 2 ms of a start; on a terminal its writes block):
 * - a regular file (whose writes never wait on a reader): the descriptor itself;
 * - a pipe or a terminal that the descriptor may write: the same pipe or terminal opened again
 *   without blocking, an open file description of its own (the shell's keeps blocking);
 * - another character device (/dev/null): the descriptor itself;
 * - a socket (a Node parent's stdio, as the launcher's; systemd's journal): the descriptor, set
 *   non-blocking as Node sets it for process.stdout (libuv's pipe handle, opened on it and closed);
 * - anything else, or where that cannot be done (no /proc, pending deprecations on, a terminal
 *   this process may not open): Node's stream is made, which opens a pipe or socket without
 *   blocking; a terminal's writes then block (`blocking` says so).
 */
function choose(fd: 1 | 2): OutputFd {
  let blocking: string | undefined
  let terminal = false
  try {
    const stat = fstatSync(fd, BIGINT)
    if (stat.isFile()) return { fd, terminal }
    terminal = stat.isCharacterDevice() && builtin('node:tty').isatty(fd)
    if (stat.isFIFO() || terminal) {
      // Only what the descriptor may write itself: one opened for reading must not become a writer.
      writeSync(fd, EMPTY)
      try {
        return { fd: openSync(`/proc/self/fd/${fd}`, constants.O_WRONLY | constants.O_NONBLOCK | constants.O_NOCTTY), terminal }
      } catch (err) {
        if (terminal) blocking = `a terminal this process may not open again (${(err as { code?: string }).code ?? 'error'})`
        throw err
      }
    }
    if (stat.isCharacterDevice()) return { fd, terminal }
    if (stat.isSocket() && nonBlockingSocket(fd)) return { fd, terminal }
  } catch {
    // Closed, read-only, no /proc, no reader left: as below (a write that fails turns the lines off).
  }
  try {
    void (fd === 1 ? process.stdout : process.stderr)
  } catch {}
  return { fd, terminal, blocking }
}

/** Sets socket descriptor `fd` non-blocking through libuv's pipe handle, as process.stdout would. @returns false when it could not */
function nonBlockingSocket(fd: number): boolean {
  const wrap = legacyBinding<{ Pipe: new (type: number) => { open(fd: number): number; close(): void }; constants: { SOCKET: number } }>('pipe_wrap')
  if (wrap === undefined) return false
  const pipe = new wrap.Pipe(wrap.constants.SOCKET)
  // libuv never closes descriptors 0-2 with their handle: closing it leaves the descriptor open.
  const opened = pipe.open(fd) === 0
  pipe.close()
  return opened
}

const chosen = new Map<number, OutputFd>()

/** The descriptor for lines of standard output (1) or error (2), chosen once per process (see choose). */
export function outputFd(fd: 1 | 2): OutputFd {
  let c = chosen.get(fd)
  if (c === undefined) chosen.set(fd, (c = choose(fd)))
  return c
}

/**
 * Writes lines to standard output (1) or error (2) with the line writer (log-writer.ts), on the
 * descriptor chosen above: a write that fails (EPIPE; not a full pipe or disk) turns the lines off. On a terminal
 * this process may not open again, whose writes block, the first line is a warning saying so.
 */
export function outputLines(fd: 1 | 2, opts: LineWriterOptions = {}): (line: string) => void {
  const out = outputFd(fd)
  let off = false
  const lines = createLineWriter(out.fd, () => {
    off = true
  }, opts)
  if (out.blocking !== undefined) {
    const msg = `output goes to ${out.blocking}: should it stop taking output (Ctrl-S, a serial line's flow control), this process stops with it; let its user open the terminal (e.g. group tty or dialout) or send the output through a pipe`
    lines.write(`${JSON.stringify({ level: 40, time: Date.now(), device: opts.who, msg })}\n`)
  }
  return (line) => {
    if (!off) lines.write(line)
  }
}
