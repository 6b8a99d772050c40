import { runLoad } from '../measure.js'
import { systems, type SystemName } from './mqtt-systems.js'

const [system, url, concurrency, durationMs, warmupMs] = process.argv.slice(2) as [SystemName, string, string, string, string]
const caller = await systems[system].caller(url)
const r = await runLoad(() => caller.call(), { concurrency: Number(concurrency), durationMs: Number(durationMs), warmupMs: Number(warmupMs) })
await caller.close()
process.stdout.write(`${JSON.stringify(r)}\n`)
process.exit(0)
