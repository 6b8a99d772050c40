// One in-process measurement in a fresh process: sharing a process between systems lets the
// first one measured shape the JIT (the load loop turns megamorphic) and the heap for the rest.
import { measureInProcess } from '../inproc.js'

const [system, concurrency, durationMs, warmupMs] = process.argv.slice(2) as [string, string, string, string]
const r = await measureInProcess(system, { concurrency: Number(concurrency), durationMs: Number(durationMs), warmupMs: Number(warmupMs) })
process.stdout.write(`${JSON.stringify(r)}\n`)
process.exit(0)
