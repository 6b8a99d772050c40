// A device whose parent is killed loses the reader of its output and its IPC channel at once. It
// must stop and exit (devices/device-config.ts stopOnSignals: within 5 s). With pino's default
// destination it could hang for ever instead: the flush pino makes at exit retried the write
// that failed with EPIPE every 100 ms (sonic-boom 4), and a demo device was seen left running
// after its CLI's SIGKILL. Several processes at once, since the hang needed a write in flight.
import { spawn, type ChildProcess } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { buildHelperProcess } from '../helpers/processes.js'
import { until } from '../helpers/wait.js'

const CHILDREN = 6

describe('a device whose output reader and parent are gone', () => {
  it('stops and exits, however much it was writing', async () => {
    const script = await buildHelperProcess('chatty-device')
    const children: ChildProcess[] = []
    const exits = new Map<number, number | null>()
    try {
      for (let i = 0; i < CHILDREN; i++) {
        const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'ignore', 'ipc'] })
        child.once('exit', (code) => exits.set(i, code))
        children.push(child)
      }
      // Each says ready; then nobody reads: the pipe fills and writes wait in flight.
      await Promise.all(children.map((c) => new Promise<void>((resolve) => {
        let seen = ''
        const onData = (d: Buffer): void => {
          seen += d.toString()
          if (!seen.includes('"msg":"ready"')) return
          c.stdout!.off('data', onData)
          c.stdout!.pause()
          resolve()
        }
        c.stdout!.on('data', onData)
      })))
      await new Promise((r) => setTimeout(r, 300))
      // The parent goes, as with SIGKILL: the read end of the output closes, and so does the IPC channel.
      for (const c of children) {
        c.stdout!.destroy()
        c.disconnect()
      }
      await until(() => exits.size === CHILDREN, 30_000).catch(() => undefined)
      const stuck = children.filter((_, i) => !exits.has(i)).map((c) => c.pid)
      expect(stuck, `processes still running: ${stuck.join(', ')}`).toEqual([])
      expect([...exits.values()].every((code) => code === 0)).toBe(true)
    } finally {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
    }
  }, 60_000)
})
