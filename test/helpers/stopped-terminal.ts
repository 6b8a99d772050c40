// A program run with its stdout on a real terminal (a pseudo-terminal, as an SSH session or a
// serial console gives) that stops taking output: Ctrl-S, as a person pausing the scroll types,
// or a serial line's XOFF. Node has no terminal of its own to hand a child, so a small Python
// script (its standard `pty` module) holds the terminal's other side, reads it the whole time
// (as the terminal would show it), and types Ctrl-S and Ctrl-Q into it.
import { execFile } from 'node:child_process'

/** What happened to the program; times in ms from its start. */
export interface StoppedTerminalRun {
  /** Heartbeats (bytes in the beat file) once the terminal had been stopped a while, and a second later. */
  beatsWhileStopped: [number, number]
  /** Every line the terminal received, in order (its `\r\n` line ends taken off). */
  lines: string[]
  /** The program's exit code after SIGTERM (sent while the terminal was stopped); null when it did not end within 10 s (then killed). */
  exitCode: number | null
  /** From SIGTERM to the program's end, ms. */
  exitMs: number
  stderr: string
}

/**
 * The terminal and the program on it: a pseudo-terminal (its side the program gets set to mode
 * PTY_MODE when given), the program started with its stdout there, and the other side read the
 * whole time into `received`; `stop()` sends SIGTERM and gives the exit code (None when it did not
 * end within 10 s: then killed) and the ms it took.
 */
const TERMINAL = String.raw`
import json, os, pty, signal, subprocess, sys, threading, time
master, slave = pty.openpty()
if os.environ.get('PTY_MODE'):
    os.fchmod(slave, int(os.environ['PTY_MODE'], 8))
child = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE)
os.close(slave)
received = bytearray()
def drain():
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            return
        if not chunk:
            return
        received.extend(chunk)
threading.Thread(target=drain, daemon=True).start()
def stop():
    started = time.time()
    child.send_signal(signal.SIGTERM)
    try:
        code = child.wait(10)
    except subprocess.TimeoutExpired:
        code = None
        child.kill()
        child.wait()
    return code, int((time.time() - started) * 1000)
`

const STOPPED = String.raw`
beat_file = os.environ['BEAT_FILE']
def beats():
    return os.path.getsize(beat_file) if os.path.exists(beat_file) else 0
time.sleep(1.5)                  # running, the terminal showing everything
os.write(master, b'\x13')        # Ctrl-S
time.sleep(2.0)
first = beats()
time.sleep(1.0)
second = beats()
os.write(master, b'\x11')        # Ctrl-Q: the lines dropped meanwhile are counted
time.sleep(1.5)
os.write(master, b'\x13')        # stopped again, then asked to stop
time.sleep(0.5)
code, exit_ms = stop()
os.write(master, b'\x11')
time.sleep(0.3)
print(json.dumps({'beats': [first, second], 'text': received.decode('utf-8', 'replace'), 'exitCode': code, 'exitMs': exit_ms, 'stderr': child.stderr.read().decode('utf-8', 'replace')}))
`

/** Runs one of the scripts above with `command` after it; its JSON answer. */
function runPython<T>(script: string, command: string[], env: Record<string, string>): Promise<T> {
  return new Promise((resolve, reject) => {
    execFile('python3', ['-c', TERMINAL + script, ...command], { env: { ...process.env, ...env }, maxBuffer: 256 * 1024 * 1024, timeout: 60_000 }, (err, stdout) => {
      if (err) return reject(err)
      resolve(JSON.parse(stdout) as T)
    })
  })
}

/** Runs `command` (its BEAT_FILE growing while it is alive) on a terminal that stops, as described above; about 8 s. */
export async function runOnStoppedTerminal(command: string[], env: Record<string, string>): Promise<StoppedTerminalRun> {
  const r = await runPython<{ beats: [number, number]; text: string; exitCode: number | null; exitMs: number; stderr: string }>(STOPPED, command, env)
  return { beatsWhileStopped: r.beats, lines: r.text.split('\r\n').slice(0, -1), exitCode: r.exitCode, exitMs: r.exitMs, stderr: r.stderr }
}

/** What a program wrote to a terminal that took everything, and its exit code after SIGTERM. */
export interface TerminalRun {
  /** Every line the terminal received (its `\r\n` line ends taken off). */
  lines: string[]
  /** The exit code after SIGTERM; null when it did not end within 10 s (then killed). */
  exitCode: number | null
  stderr: string
}

/**
 * Runs `command` for `seconds` on a terminal that takes everything, then stops it with SIGTERM.
 * `mode` (e.g. 0o600) is set on the program's side of the terminal: who else may open it.
 */
export async function runOnTerminal(command: string[], env: Record<string, string>, opts: { seconds: number; mode?: number }): Promise<TerminalRun> {
  const script = `time.sleep(${opts.seconds})
code, _ = stop()
time.sleep(0.3)
print(json.dumps({'text': received.decode('utf-8', 'replace'), 'code': code, 'stderr': child.stderr.read().decode('utf-8', 'replace')}))
`
  const r = await runPython<{ text: string; code: number | null; stderr: string }>(script, command, { ...env, ...(opts.mode === undefined ? {} : { PTY_MODE: opts.mode.toString(8) }) })
  return { lines: r.text.split('\r\n').slice(0, -1), exitCode: r.code, stderr: r.stderr }
}
