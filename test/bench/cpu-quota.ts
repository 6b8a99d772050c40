// `npm run bench -- --cpu-quota 0.5`: the measured processes run in a CPU cgroup limited to a
// fraction of one core, to see the figures a slower CPU (or a device) would give. cgroup v1
// (`/sys/fs/cgroup/cpu`, cpu.cfs_quota_us) is used where it is mounted and writable; else
// cgroup v2 (`cpu.max`) where the root offers the cpu controller; else the bench says why in
// one line and runs unconstrained. The group is removed at the end, on an error and on Ctrl-C.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'

const V1_ROOT = '/sys/fs/cgroup/cpu'
const V2_ROOT = '/sys/fs/cgroup'
const PERIOD_US = 100_000
const PREFIX = 'outpost-bench-'

/** A CPU cgroup the measured processes are moved into. */
export interface CpuGroup {
  /** The limit, in cores (0.5 = half of one core). */
  readonly cores: number
  /** One line saying what runs where, for the output. */
  readonly describe: string
  /** Moves a running process (all its threads) into the group; false if it has already exited. */
  add(pid: number): boolean
  /** How often the limit held processes back so far (cpu.stat), to show it took effect. */
  throttling(): string
  /** Moves any process left back to the root group and removes the group; safe to call twice. */
  remove(): void
}

/** Why the quota could not be applied, to be printed as is. */
export interface CpuGroupRefusal {
  readonly refused: string
}

const errText = (e: unknown): string => (e instanceof Error ? e.message : String(e))
const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** Pids listed in a group's cgroup.procs (empty if it cannot be read). */
function procsOf(dir: string): number[] {
  try {
    return readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number)
  } catch {
    return []
  }
}

/** Empties a group into `root` and removes it; a process that exits meanwhile is skipped. */
function dissolve(dir: string, root: string): void {
  for (let attempt = 0; attempt < 20; attempt++) {
    for (const pid of procsOf(dir)) {
      try {
        writeFileSync(path.join(root, 'cgroup.procs'), String(pid))
      } catch {
        // exited meanwhile
      }
    }
    try {
      rmdirSync(dir)
      return
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return
      // EBUSY: a process is still leaving; try again shortly
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50)
    }
  }
}

/** Removes groups left by a bench that was killed (its pid, in the group's name, is gone). */
function removeStale(root: string): void {
  let names: string[] = []
  try {
    names = readdirSync(root).filter((n) => n.startsWith(PREFIX))
  } catch {
    return
  }
  for (const name of names) {
    const owner = Number(name.slice(PREFIX.length))
    if (Number.isInteger(owner) && owner !== process.pid && !isAlive(owner)) dissolve(path.join(root, name), root)
  }
}

/** Creates the group with `cores` of CPU time per period, or says why it cannot. */
export function createCpuGroup(cores: number): CpuGroup | CpuGroupRefusal {
  if (!(cores > 0) || !Number.isFinite(cores)) return { refused: `--cpu-quota ${cores}: expected a number of cores above 0, e.g. 0.5` }
  const quotaUs = Math.max(1_000, Math.round(cores * PERIOD_US))
  let root: string
  let limit: (dir: string) => void
  let version: string
  if (existsSync(path.join(V1_ROOT, 'cpu.cfs_quota_us'))) {
    root = V1_ROOT
    version = 'cgroup v1'
    limit = (dir) => {
      writeFileSync(path.join(dir, 'cpu.cfs_period_us'), String(PERIOD_US))
      writeFileSync(path.join(dir, 'cpu.cfs_quota_us'), String(quotaUs))
    }
  } else if (existsSync(path.join(V2_ROOT, 'cgroup.controllers'))) {
    root = V2_ROOT
    version = 'cgroup v2'
    let offered = ''
    try {
      offered = readFileSync(path.join(V2_ROOT, 'cgroup.subtree_control'), 'utf8')
    } catch (e) {
      return { refused: `no CPU limit: cgroup v2 at ${V2_ROOT} is not readable (${errText(e)}); running unconstrained` }
    }
    if (!offered.split(/\s+/).includes('cpu')) return { refused: `no CPU limit: cgroup v2 at ${V2_ROOT} does not delegate the cpu controller (cgroup.subtree_control: "${offered.trim()}"); running unconstrained` }
    limit = (dir) => writeFileSync(path.join(dir, 'cpu.max'), `${quotaUs} ${PERIOD_US}`)
  } else {
    return { refused: `no CPU limit: neither cgroup v1 (${V1_ROOT}) nor cgroup v2 (${V2_ROOT}) offers a CPU controller here; running unconstrained` }
  }
  const groupDir = path.join(root, `${PREFIX}${process.pid}`)
  removeStale(root)
  try {
    mkdirSync(groupDir)
  } catch (e) {
    return { refused: `no CPU limit: cannot create ${groupDir} (${errText(e)}); running unconstrained` }
  }
  try {
    limit(groupDir)
  } catch (e) {
    dissolve(groupDir, root)
    return { refused: `no CPU limit: cannot set the quota in ${groupDir} (${errText(e)}); running unconstrained` }
  }
  let removed = false
  const group: CpuGroup = {
    cores,
    describe: `CPU limit: measured processes run in ${groupDir} (${version}), ${quotaUs} µs per ${PERIOD_US} µs = ${cores} core`,
    add(pid) {
      try {
        writeFileSync(path.join(groupDir, 'cgroup.procs'), String(pid))
        return true
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false
        throw e
      }
    },
    throttling() {
      let stat = ''
      try {
        stat = readFileSync(path.join(groupDir, 'cpu.stat'), 'utf8')
      } catch (e) {
        return `CPU limit: cpu.stat not readable (${errText(e)})`
      }
      const field = (name: string): number => Number(new RegExp(`^${name} (\\d+)`, 'm').exec(stat)?.[1] ?? 0)
      // v1 counts throttled time in ns (throttled_time), v2 in µs (throttled_usec)
      const throttledMs = Math.round(field('throttled_time') / 1e6 + field('throttled_usec') / 1e3)
      return `CPU limit: measured processes were held back in ${field('nr_throttled')} of ${field('nr_periods')} periods, ${throttledMs} ms in all`
    },
    remove() {
      if (removed) return
      removed = true
      dissolve(groupDir, root)
    },
  }
  // Removed however the bench ends: a normal exit or an error ('exit'), Ctrl-C or a kill.
  process.once('exit', () => group.remove())
  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]] as const) {
    process.once(signal, () => {
      group.remove()
      process.exit(code)
    })
  }
  return group
}
