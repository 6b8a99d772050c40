// What `outpost device` and the demo (npm start) run, seen from outside: the device bundles of
// dist/bundles, as a device runs them (built first when not current), not the compiled sources.
// The proof is in /proc: the thermo's process has the SQLite addon mapped from beside its bundle,
// and the demo's device processes were started with the bundles as their script.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import type { MqttBroker } from '../../gateway/broker/mqtt-broker.js'
import { freshAedes } from '../helpers/aedes.js'
import { startProcess } from '../helpers/device-process.js'
import { until } from '../helpers/wait.js'

const ROOT = path.resolve(import.meta.dirname, '..', '..')
const BUNDLES = path.join(ROOT, 'dist', 'bundles')
const dirs: string[] = []
const tempDir = (): string => {
  const d = mkdtempSync(path.join(tmpdir(), 'outpost-run-bundles-'))
  dirs.push(d)
  return d
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

/** The command lines of the processes whose parent is `pid`. */
function childrenOf(pid: number): string[][] {
  const found: string[][] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      // stat: "pid (comm) state ppid …"; comm may hold spaces, so read after its closing parenthesis.
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (ppid === pid) found.push(readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').filter((s) => s !== ''))
    } catch {
      // gone meanwhile
    }
  }
  return found
}

describe.runIf(process.platform === 'linux')('the devices the CLI runs are their bundles', () => {
  let broker: MqttBroker | undefined
  afterAll(async () => {
    await broker?.close()
  })

  it('outpost device thermo runs dist/bundles/thermo: its SQLite addon is the one beside the bundle', async () => {
    broker = await freshAedes()
    const cache = path.join(BUNDLES, '.compile-cache', 'thermo')
    rmSync(cache, { recursive: true, force: true })
    const device = startProcess('bin/outpost.js', ['device', 'thermo', '--url', broker.url, '--id', 'bundled-thermo', '--log-format', 'json'], { OUTPOST_DATA_DIR: tempDir(), OUTPOST_SAMPLE_MS: '500' })
    try {
      await device.waitFor('"msg":"ready"', 60_000)
      const maps = readFileSync(`/proc/${device.child.pid}/maps`, 'utf8')
      expect(maps).toContain(path.join(BUNDLES, 'thermo', 'better_sqlite3.node'))
      expect(maps).not.toContain(path.join('node_modules', 'better-sqlite3', 'build', 'Release', 'better_sqlite3.node'))
      // Its code cache, made once it was ready, in a folder beside the bundle folders (not in its own).
      await until(() => existsSync(cache) && readdirSync(cache).some((f) => /^outpost-thermo-[0-9a-f]{16}-.*\.v8$/.test(f)), 10_000)
      await device.kill('SIGTERM')
      expect((await device.exited).code).toBe(0)
    } finally {
      await device.kill()
    }
  }, 90_000)

  it('the demo starts each device process with its bundle as the script', async () => {
    const demo = startProcess('bin/outpost.js', ['demo', '--port', '0', '--outage', '0', '--log-format', 'pretty'], { OUTPOST_DATA_DIR: tempDir(), OUTPOST_SAMPLE_MS: '300' })
    try {
      await demo.waitFor('[display-1] display shows', 60_000)
      let scripts: string[] = []
      await until(() => {
        scripts = childrenOf(demo.child.pid!).map((argv) => argv[1] ?? '').sort()
        return scripts.length === 2
      }, 10_000)
      expect(scripts).toEqual([path.join(BUNDLES, 'display', 'display.cjs'), path.join(BUNDLES, 'thermo', 'thermo.cjs')])
      await demo.kill('SIGTERM')
      expect((await demo.exited).code).toBe(0)
      expect(demo.lines.join('\n')).not.toMatch(/ERROR/)
    } finally {
      await demo.kill()
    }
  }, 90_000)
})
