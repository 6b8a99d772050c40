// The presence-device helper process (test/e2e/chaos/presence-device.ts), started and read from a test.
import { spawn, type ChildProcess } from 'node:child_process'

/** What one call of a `call` device came to: the device that answered, or the error code. */
export type Outcome = { ok: true; device: string } | { ok: false; code: string }

/** A running presence-device process, as a test sees it. */
export interface DeviceProcess {
  readonly ready: boolean
  readonly outcomes: Outcome[]
  /** Sends `signal` and resolves once the process has exited. */
  kill(signal: 'SIGTERM' | 'SIGKILL'): Promise<void>
}

/**
 * Starts the built helper `script` as device `id` (`serve`: hosts the echo service; `call`: calls
 * it over and over) on `url` under topic `prefix`; `cleanup` registers its SIGKILL after the test.
 */
export function startPresenceDevice(script: string, url: string, id: string, role: 'serve' | 'call', prefix: string, cleanup: (step: () => unknown) => void): DeviceProcess {
  const child: ChildProcess = spawn(process.execPath, [script, url, id, role, prefix], { stdio: ['ignore', 'pipe', 'inherit'] })
  const exited = new Promise<void>((r) => child.once('exit', () => r()))
  cleanup(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await exited
  })
  const proc = { ready: false, outcomes: [] as Outcome[] }
  let buf = ''
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString()
    const lines = buf.split('\n')
    buf = lines.pop()!
    for (const l of lines) {
      const o = JSON.parse(l) as Outcome | { ready: true }
      if ('ready' in o) proc.ready = true
      else proc.outcomes.push(o)
    }
  })
  return Object.assign(proc, {
    kill: async (signal: 'SIGTERM' | 'SIGKILL') => {
      child.kill(signal)
      await exited
    },
  })
}
