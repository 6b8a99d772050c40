// A device process stopped (SIGSTOP: a debugger, a cgroup freezer, a suspended VM) for longer
// than a lease, then let go on, three times, while slow jobs run one at a time with five more
// leased ahead. A job that was running when the process stopped lost its lease, and that attempt
// counts (the README: only a dead or frozen process loses a lease). A job that was only leased
// ahead never started: the stop must not cost it an attempt. Before, each stop took one from
// every job waiting in the buffer, and after `maxAttempts` stops they were dead-lettered
// (LEASE_LOST, "the device died or froze while running it") without ever having run.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildHelperProcess } from '../helpers/processes.js'

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

describe('a device process stopped and continued', () => {
  let dir: string
  let script: string
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'outpost-job-freeze-'))
    script = await buildHelperProcess('freeze-worker')
  })
  // A failing test may leave the device stopped (SIGSTOP): SIGKILL ends it even so.
  const children: ChildProcess[] = []
  afterAll(() => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  })

  it('costs an attempt only of the job that was running, not of the jobs leased ahead', async () => {
    const JOBS = 12
    const child = spawn(process.execPath, [script, path.join(dir, 'device.db'), String(JOBS)], { stdio: ['ignore', 'pipe', 'inherit'] })
    children.push(child)
    let out = ''
    child.stdout.on('data', (d: Buffer) => void (out += d.toString()))
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)))
    while (!out.includes('ready\n')) await sleep(10)
    for (let k = 0; k < 3; k++) {
      await sleep(120)
      child.kill('SIGSTOP')
      await sleep(1_500) // longer than the 600 ms lease
      child.kill('SIGCONT')
    }
    expect(await exited).toBe(0)
    const starts = new Map<number, number>()
    for (const m of out.matchAll(/^start (\d+) (\d+)$/gm)) starts.set(Number(m[1]), (starts.get(Number(m[1])) ?? 0) + 1)
    const done = JSON.parse(out.slice(out.indexOf('done ') + 5)) as { completed: number; dead: { n: number; attempt: number; code: string }[] }
    // A dead job is one whose every attempt (two) began and lost its lease to a stop.
    for (const d of done.dead) expect({ n: d.n, starts: starts.get(d.n) ?? 0 }).toEqual({ n: d.n, starts: 2 })
    expect(done.completed + done.dead.length).toBe(JOBS)
    // Each stop costs at most the attempt that was running: one more start per stop, at most.
    expect([...starts.values()].reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(JOBS + 3)
    expect(done.dead.length).toBeLessThanOrEqual(1)
  }, 60_000)
})
