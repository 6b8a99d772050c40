import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { until } from './wait.js'

/** A device (or helper) process started by a test, with what it wrote so far, line by line. */
export interface TestProcess {
  readonly child: ChildProcess
  /** Lines of stdout and stderr, as they came. */
  readonly lines: string[]
  /** Resolves with the exit code (or the signal) once the process ended. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  /** Waits for a line containing `text`; returns it. @throws after `ms` */
  waitFor(text: string, ms?: number): Promise<string>
  /** Ends the process (SIGKILL unless told) and waits for it. */
  kill(signal?: NodeJS.Signals): Promise<void>
}

/** Starts `node <script> …args` with `env` added to this process's environment, collecting its output. */
export function startProcess(script: string, args: string[], env: Record<string, string>, opts: Pick<SpawnOptions, 'uid' | 'gid'> = {}): TestProcess {
  const child = spawn(process.execPath, [script, ...args], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'], ...opts })
  const lines: string[] = []
  const collect = (stream: NodeJS.ReadableStream | null): void => {
    let buf = ''
    stream?.setEncoding('utf8')
    stream?.on('data', (chunk: string) => {
      buf += chunk
      let nl: number
      while ((nl = buf.indexOf('\n')) >= 0) {
        lines.push(buf.slice(0, nl))
        buf = buf.slice(nl + 1)
      }
    })
    stream?.on('end', () => {
      if (buf !== '') lines.push(buf)
    })
  }
  collect(child.stdout)
  collect(child.stderr)
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('close', (code, signal) => resolve({ code, signal }))
  })
  let ended = false
  void exited.then(() => (ended = true))
  return {
    child,
    lines,
    exited,
    async waitFor(text, ms = 30_000) {
      await until(() => lines.some((l) => l.includes(text)) || ended, ms).catch(() => {
        throw new Error(`no line with "${text}" within ${ms} ms; output:\n${lines.join('\n')}`)
      })
      const line = lines.find((l) => l.includes(text))
      if (line === undefined) throw new Error(`process ended without a line containing "${text}"; output:\n${lines.join('\n')}`)
      return line
    },
    async kill(signal = 'SIGKILL') {
      if (!ended) child.kill(signal)
      await exited
    },
  }
}
