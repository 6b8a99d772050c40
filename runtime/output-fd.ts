// Which descriptor a process writes its standard output or error to, so that a write to a pipe,
// socket or terminal nobody takes output from fails at once (EAGAIN) instead of stopping the
// process: the line writer (log-writer.ts) then waits a second at most and drops lines. Used by
// the runtime's logger and by the device launcher, which must never stop with its terminal.
// No dependencies beyond Node's own modules: the launcher is a small file of its own.
import { constants, fstatSync, openSync, writeSync } from 'node:fs'
import { builtin } from './lazy-builtin.js'
import { legacyBinding } from './legacy-binding.js'

/** A descriptor to write lines of output to. */
export interface OutputFd {
  fd: number
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
export const BIGINT = { bigint: true } as const

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
  try {
    const stat = fstatSync(fd, BIGINT)
    if (stat.isFile()) return { fd }
    const terminal = stat.isCharacterDevice() && builtin('node:tty').isatty(fd)
    if (stat.isFIFO() || terminal) {
      // Only what the descriptor may write itself: one opened for reading must not become a writer.
      writeSync(fd, EMPTY)
      try {
        return { fd: openSync(`/proc/self/fd/${fd}`, constants.O_WRONLY | constants.O_NONBLOCK | constants.O_NOCTTY) }
      } catch (err) {
        if (terminal) blocking = `a terminal this process may not open again (${(err as { code?: string }).code ?? 'error'})`
        throw err
      }
    }
    if (stat.isCharacterDevice()) return { fd }
    if (stat.isSocket() && nonBlockingSocket(fd)) return { fd }
  } catch {
    // Closed, read-only, no /proc, no reader left: as below (a write that fails turns the lines off).
  }
  try {
    void (fd === 1 ? process.stdout : process.stderr)
  } catch {}
  return { fd, blocking }
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
