// A gateway process for the disk tests (gateway-disk.test.ts): broker state in broker.db under
// DATA_DIR, auth off, MQTT on 127.0.0.1:PORT and its HTTP face on a free port (the kill -9
// process has none, and the tests ask /readyz). Logs JSON lines at warn on stderr, so a test can
// count what a failing disk makes it write. Says `READY <http url>` on stdout once it listens;
// SIGTERM closes it gracefully (exit 0).
import { pino } from 'pino'
import { defaultGatewayConfig } from '../../gateway/config/gateway-config.js'
import { startGateway } from '../../gateway/index.js'

const dataDir = process.env.DATA_DIR
const port = Number(process.env.PORT)
if (dataDir === undefined || !Number.isInteger(port)) throw new Error('DATA_DIR and PORT are required')
const config = { ...defaultGatewayConfig(), dataDir, persistence: 'sqlite' as const }
config.auth = { ...config.auth, enabled: false }
config.http = { ...config.http, enabled: true, host: '127.0.0.1', port: 0 }
const gw = await startGateway({ config, port, host: '127.0.0.1', logger: pino({ level: 'warn' }, pino.destination(2)) })
process.once('SIGTERM', () => {
  void gw.close().then(() => process.exit(0))
})
process.stdout.write(`READY ${gw.http!.url}\n`)
