import { runLoad } from '../measure.js'
import { systems, type SystemName } from './mqtt-systems.js'

const [system, url, concurrency, durationMs, warmupMs] = process.argv.slice(2) as [SystemName, string, string, string, string]
const caller = await systems[system].caller(url)
const cpu0 = process.cpuUsage()
const t0 = performance.now()
const r = await runLoad(() => caller.call(), { concurrency: Number(concurrency), durationMs: Number(durationMs), warmupMs: Number(warmupMs) })
const cpu = process.cpuUsage(cpu0)
// Operations in the whole window (warm-up included), to share CPU time per operation.
const ops = Math.round((r.ops_per_s * (performance.now() - t0)) / 1000)
await caller.close()
process.stdout.write(`${JSON.stringify({ ...r, cpu_us: cpu.user + cpu.system, ops })}\n`)
process.exit(0)
