// Croner is in a device bundle only when a service of the device declares a cron schedule:
// `cron` is a function of its own (runtime/contract/cron.ts), not a method of the schedule
// builder. Two small devices are bundled as `outpost build` bundles (build/bundle.ts), one with
// an interval schedule and one with a cron schedule; the cron one is then run as a process from a
// folder with no node_modules above it and must fire on its pattern.
import { execFile } from 'node:child_process'
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { bundleDevice, type DeviceBundle } from '../../build/bundle.js'
import { PROJECT_ROOT } from '../../build/project-root.js'
import { bareEnv, nodeModulesAbove, tempDirs } from './build-helpers.js'

const temp = tempDirs('bundle-cron')
const run = promisify(execFile)

/** A device whose one service emits `tick` on `timing` (source text); it prints each tick it hears, and stops after three. */
function deviceSource(timing: string, imports: string): string {
  const runtime = JSON.stringify(path.join(PROJECT_ROOT, 'runtime', 'index.ts'))
  return `
import * as v from 'valibot'
import { createMemoryBridge, createMemoryHub, createRuntime, defineContract, defineService, ${imports} } from ${runtime}
const ticker = defineContract({ name: 'ticker', version: '1', events: { tick: v.object({ at: v.number() }) } })
const listener = defineContract({ name: 'listener', version: '1' })
const hub = createMemoryHub()
let heard = 0
const device = createRuntime({
  bridge: createMemoryBridge({ hub, deviceId: 'ticker' }),
  services: [defineService(ticker, { commands: {}, schedules: (s) => ({ beat: ${timing} }) })],
})
const other = createRuntime({
  bridge: createMemoryBridge({ hub, deviceId: 'listener' }),
  services: [defineService(listener, { commands: {}, subscriptions: (s) => ({ ticks: s.on(ticker, 'tick', async (p) => {
    console.log('tick ' + p.at)
    if (++heard === 3) { await device.stop(); await other.stop(); process.exit(0) }
  }) }) })],
})
await other.start()
await device.start()
`
}

/** Bundles a device made of `source` in a project of its own (its build/stubs and node_modules are this project's). */
async function bundle(name: string, source: string): Promise<{ bundle: DeviceBundle; cronerBytes: number }> {
  const root = temp()
  mkdirSync(path.join(root, 'devices', name), { recursive: true })
  symlinkSync(path.join(PROJECT_ROOT, 'build'), path.join(root, 'build'))
  symlinkSync(path.join(PROJECT_ROOT, 'node_modules'), path.join(root, 'node_modules'))
  writeFileSync(path.join(root, 'devices', name, 'main.ts'), source)
  const b = await bundleDevice(name, path.join(temp(), name), root)
  const inputs = Object.values(b.metafile.outputs).find((o) => o.entryPoint !== undefined)!.inputs
  const cronerBytes = Object.entries(inputs)
    .filter(([file]) => file.includes('node_modules/croner/'))
    .reduce((n, [, i]) => n + i.bytesInOutput, 0)
  return { bundle: b, cronerBytes }
}

describe('croner in a device bundle', () => {
  it('is left out of a device whose schedules are intervals, and carried by one with a cron pattern, which fires on it', async () => {
    const interval = await bundle('interval', deviceSource("s.every(1_000, 'tick', (o) => ({ at: o.at }))", 'every'))
    const withCron = await bundle('withcron', deviceSource("s.at(cron('* * * * * *'), 'tick', (o) => ({ at: o.at }))", 'cron'))
    // Croner is about 32 KB minified; what esbuild keeps of a module nothing calls is a few statements.
    expect(interval.cronerBytes).toBeLessThan(1_024)
    expect(withCron.cronerBytes).toBeGreaterThan(20_000)
    expect(withCron.bundle.bytes - interval.bundle.bytes).toBeGreaterThan(20_000)

    // The cron device runs from a folder no package can come from, and ticks once a second, on the second.
    const dir = path.dirname(withCron.bundle.file)
    expect(nodeModulesAbove(dir)).toEqual([])
    const { stdout } = await run(process.execPath, [withCron.bundle.file], { cwd: dir, env: bareEnv({}), timeout: 30_000 })
    const ticks = stdout.split('\n').filter((l) => l.startsWith('tick ')).map((l) => Number(l.slice(5)))
    expect(ticks).toHaveLength(3)
    for (const at of ticks) expect(at % 1_000).toBe(0)
    expect(ticks[1]! - ticks[0]!).toBe(1_000)
    expect(ticks[2]! - ticks[1]!).toBe(1_000)
  })
})
