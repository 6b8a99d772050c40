// Measuring one phase of a bench process: its CPU time (process.cpuUsage: user + system, every
// thread of this process) and, when the bench runs with `--cpu-prof DIR`, a V8 CPU profile of
// that phase alone, written to DIR/<label>-<pid>.cpuprofile.
//
// A V8 profile samples the main thread's wall time: a commit waiting on fsync shows as time in
// SQLite. For on-CPU time only, run the process under `perf record --delay=-1 --control
// fifo:CTL …` with OUTPOST_BENCH_PERF_CTL=CTL: a labelled phase enables perf at its start and
// disables it at its end (see /work/notes/h5-profile.md for the command).
import { Session } from 'node:inspector/promises'
import { appendFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { PROFILE_DIR_ENV } from '../measured.js'

/** A running phase measurement; `end()` stops it and returns the CPU time used, in µs. */
export interface Phase {
  end(): Promise<number>
}

/** Starts measuring a phase; with a `label` (the profile's file name) it is also profiled when asked to. */
export async function startPhase(label?: string): Promise<Phase> {
  const dir = process.env[PROFILE_DIR_ENV]
  let session: Session | undefined
  if (label !== undefined && dir !== undefined && dir !== '') {
    session = new Session()
    session.connect()
    await session.post('Profiler.enable')
    await session.post('Profiler.setSamplingInterval', { interval: 250 })
    await session.post('Profiler.start')
  }
  const perfCtl = label === undefined ? undefined : process.env.OUTPOST_BENCH_PERF_CTL
  if (perfCtl !== undefined && perfCtl !== '') appendFileSync(perfCtl, 'enable\n')
  const cpu0 = process.cpuUsage()
  return {
    async end() {
      const cpu = process.cpuUsage(cpu0)
      if (perfCtl !== undefined && perfCtl !== '') appendFileSync(perfCtl, 'disable\n')
      if (session !== undefined && dir !== undefined) {
        const { profile } = await session.post('Profiler.stop')
        writeFileSync(path.join(dir, `${label}-${process.pid}.cpuprofile`), JSON.stringify(profile))
        session.disconnect()
      }
      return cpu.user + cpu.system
    },
  }
}

/** CPU µs per operation, one decimal. */
export const perOp = (cpuUs: number, ops: number): number => Math.round((cpuUs / ops) * 10) / 10
