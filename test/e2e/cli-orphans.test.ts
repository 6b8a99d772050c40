// SIGKILL of the CLI leaves no device running: `outpost device` and `outpost demo` as real
// processes, killed with no chance to clean up; whatever they started must go with them.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import type { MqttBroker } from '../../gateway/broker/mqtt-broker.js'
import { freshAedes } from '../helpers/aedes.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { until } from '../helpers/wait.js'

/** Parent pid and state of a process, from /proc; undefined once it is gone. */
function procStat(pid: number): { ppid: number; state: string } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // The command name in parentheses may hold spaces; the fields after it are fixed.
    const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return { state: state!, ppid: Number(ppid) }
  } catch {
    return undefined
  }
}

/** A process as a failure message shows it: pid, state and command line. */
function describeProcess(pid: number): string {
  try {
    return `${pid} (${procStat(pid)?.state ?? '?'}) ${readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim()}`
  } catch {
    return String(pid)
  }
}

/** Every process started, directly or not, by `root`. */
function descendants(root: number): number[] {
  const all = readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number)
  const found: number[] = []
  let parents = new Set([root])
  while (parents.size > 0) {
    const next = all.filter((p) => parents.has(procStat(p)?.ppid ?? -1) && !found.includes(p))
    found.push(...next)
    parents = new Set(next)
  }
  return found
}

/** Gone, or a zombie waiting for whoever adopted it to reap it (it runs no code). */
const gone = (pid: number): boolean => {
  const s = procStat(pid)
  return s === undefined || s.state === 'Z' || s.state === 'X'
}

describe('the CLI killed with SIGKILL', () => {
  const cleanup = cleanupAfterEach()

  /** Starts the CLI; `started()` lists what it has started so far (and remembers it for the cleanup). */
  const startCli = (args: string[], env: Record<string, string>): { cli: ChildProcess; output: () => string; started: () => number[] } => {
    const cli = spawn(process.execPath, ['bin/outpost.js', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    cli.stdout!.on('data', (c: Buffer) => (out += c.toString()))
    cli.stderr!.on('data', (c: Buffer) => (out += c.toString()))
    const seen = new Set<number>()
    const started = (): number[] => {
      for (const p of descendants(cli.pid!)) seen.add(p)
      return [...seen]
    }
    // Whatever the test's outcome, nothing it started is left behind (once orphaned, they are no longer the CLI's descendants).
    cleanup(() => {
      for (const pid of [cli.pid!, ...seen, ...descendants(cli.pid!)]) {
        try {
          if (!gone(pid)) process.kill(pid, 'SIGKILL')
        } catch {
          // already gone
        }
      }
    })
    return { cli, output: () => out, started }
  }

  const tempDir = (): string => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-orphans-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    return dir
  }

  it('takes the device of `outpost device` with it: its broker connection closes and no process is left', async () => {
    const broker: MqttBroker = await freshAedes()
    cleanup(() => broker.close())
    const connected = new Set<string>()
    broker.aedes.on('client', (c) => connected.add(c.id))
    broker.aedes.on('clientDisconnect', (c) => connected.delete(c.id))
    const { cli, output, started: startedBy } = startCli(['device', 'thermo', '--url', broker.url, '--id', 'orphan-thermo'], { OUTPOST_DATA_DIR: tempDir() })
    await until(() => connected.has('orphan-thermo'), 30_000).catch(() => expect.fail(`the device never connected:\n${output()}`))
    const started = startedBy()
    cli.kill('SIGKILL')
    await until(() => gone(cli.pid!), 10_000)
    await until(() => !connected.has('orphan-thermo') && started.every(gone), 15_000)
      .catch(() => expect.fail(`still running after the CLI was killed: connected ${String(connected.has('orphan-thermo'))}, processes ${started.filter((p) => !gone(p)).join(', ')}`))
    expect(started.filter((p) => !gone(p))).toEqual([])
  }, 60_000)

  it('takes the devices of `outpost demo` with it', async () => {
    const { cli, output, started: startedBy } = startCli(['demo', '--port', '0', '--outage', '0'], { OUTPOST_DATA_DIR: tempDir(), OUTPOST_SAMPLE_MS: '300' })
    // Both devices ready: their lines name them, whatever the format (readable or JSON).
    const ready = (id: string): boolean => output().split('\n').some((l) => l.includes(id) && /\bready\b/.test(l))
    await until(() => ready('thermo-1') && ready('display-1'), 40_000).catch(() => expect.fail(`the demo's devices never became ready:\n${output()}`))
    const started = startedBy()
    expect(started.length).toBeGreaterThanOrEqual(2)
    cli.kill('SIGKILL')
    await until(() => gone(cli.pid!), 10_000)
    // A device whose parent went away stops itself and exits within 5 s (longer on a loaded machine).
    await until(() => started.every(gone), 30_000)
      .catch(() => expect.fail(`device processes still running after the demo was killed: ${started.filter((p) => !gone(p)).map(describeProcess).join('; ')}\n${output()}`))
    expect(started.filter((p) => !gone(p))).toEqual([])
  }, 90_000)
})
