// A gateway process for the kill -9 tests: broker state in broker.db under DATA_DIR, auth off,
// on 127.0.0.1:PORT. Says READY on stdout once it listens; SIGTERM closes it gracefully (exit 0).
import { pino } from 'pino'
import { defaultGatewayConfig } from '../../gateway/config/gateway-config.js'
import { startGateway } from '../../gateway/index.js'

const dataDir = process.env.DATA_DIR
const port = Number(process.env.PORT)
if (dataDir === undefined || !Number.isInteger(port)) throw new Error('DATA_DIR and PORT are required')
const config = { ...defaultGatewayConfig(), dataDir, persistence: 'sqlite' as const }
config.auth = { ...config.auth, enabled: false }
// SESSION_MAX_MESSAGES: the bound of one client's queue (0: none), for floods larger than the default's 10,000.
if (process.env.SESSION_MAX_MESSAGES !== undefined) config.mqtt.sessionMaxMessages = Number(process.env.SESSION_MAX_MESSAGES)
// FORWARD: the forward section (targets and routes) as JSON, for the forwarding kill -9 test.
if (process.env.FORWARD !== undefined) config.forward = JSON.parse(process.env.FORWARD) as NonNullable<typeof config.forward>
const gw = await startGateway({ config, port, host: '127.0.0.1', logger: pino({ level: 'warn' }, pino.destination(2)) })
process.once('SIGTERM', () => {
  void gw.close().then(() => process.exit(0))
})
process.stdout.write('READY\n')
