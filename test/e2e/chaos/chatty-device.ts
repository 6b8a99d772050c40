// A process that logs as a device does (createLogger, JSON lines on stdout) and stops as a device
// does (stopOnSignals): many lines a second, and 50 more on its way out. For
// test/e2e/log-reader-gone.test.ts, which takes its reader and its parent away at once.
import { stopOnSignals } from '../../../devices/device-config.js'
import { createLogger } from '../../../runtime/logger.js'

const log = createLogger({ name: 'chatty' })
let n = 0
const ticking = setInterval(() => log.info({ n: n++, pad: 'x'.repeat(200) }, 'tick'), 2)
stopOnSignals(async () => {
  clearInterval(ticking)
  for (let i = 0; i < 50; i++) log.info({ i, pad: 'y'.repeat(500) }, 'stopping')
})
log.info('ready')
