// What happens to a measured process (the one doing the work a figure is about, as opposed to
// the broker or the caller beside it) when the bench starts it: with `--cpu-quota` it is moved
// into the CPU cgroup, with `--cpu-prof DIR` it writes a V8 CPU profile into DIR.
import type { CpuGroup } from './cpu-quota.js'

/** How measured processes are run in this bench run. */
export interface MeasuredSettings {
  /** The CPU cgroup measured processes are moved into (`--cpu-quota`). */
  group?: CpuGroup
  /** Where measured processes write .cpuprofile files (`--cpu-prof DIR`). */
  profileDir?: string
}

let settings: MeasuredSettings = {}

/** Sets how measured processes are run, once, before any section starts. */
export function configureMeasured(s: MeasuredSettings): void {
  settings = s
}

/** The CPU limit in cores every figure of this run was measured under, or null for none. */
export function cpuQuota(): number | null {
  return settings.group?.cores ?? null
}

/** True when the codec, which runs in the bench's own process otherwise, needs a process of its own. */
export function needsOwnProcess(): boolean {
  return settings.group !== undefined || settings.profileDir !== undefined
}

/** Moves a just-started measured process into the CPU cgroup, if there is one. */
export function confine(pid: number | undefined): void {
  if (settings.group !== undefined && pid !== undefined) settings.group.add(pid)
}

/** Environment variable a measured process reads to profile its own measured phase (see procs/phase-profile.ts). */
export const PROFILE_DIR_ENV = 'OUTPOST_BENCH_PROFILE_DIR'

/**
 * Node flags and environment for a measured process. A script that profiles its measured phase
 * itself (`phased`: the queue and drain processes, whose set-up would otherwise fill the profile)
 * gets the directory in its environment; any other gets node's own --cpu-prof for its lifetime.
 */
export function measuredLaunch(phased: boolean): { nodeFlags: string[]; env: Record<string, string> } {
  const dir = settings.profileDir
  if (dir === undefined) return { nodeFlags: [], env: {} }
  return phased ? { nodeFlags: [], env: { [PROFILE_DIR_ENV]: dir } } : { nodeFlags: ['--cpu-prof', `--cpu-prof-dir=${dir}`, '--cpu-prof-interval=250'], env: {} }
}
