// The codec section in a process of its own, for the runs that confine or profile measured
// processes (`--cpu-quota`, `--cpu-prof`); otherwise it runs in the bench's own process.
import { benchCodec } from '../codec.js'

const ms = Number(process.argv[2])
process.stdout.write(`${JSON.stringify(benchCodec(ms))}\n`)
process.exit(0)
