// The thermo device exactly as its bundle runs it (devices/thermo/main.ts), built once with
// esbuild so that each start in a test is quick. Configured by its environment (OUTPOST_*).
import '../../../devices/thermo/main.js'
