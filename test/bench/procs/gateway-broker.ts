// Broker process of the gateway benchmark. `gateway <options JSON>` runs Outpost's gateway as
// `outpost gateway` does (startGateway; authentication and persistence as the options say),
// `aedes` a plain aedes with its in-memory persistence and nothing of the gateway around it.
// Either prints {url} once listening and closes on SIGTERM. `seed <dataDir> <ids JSON>` adds
// the devices to the device table of <dataDir>/gateway.db before any gateway runs there, writes
// their secrets to <dataDir>/bench-secrets.json for the clients, and exits.
import { writeFileSync } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { Aedes } from 'aedes'
import { createDeviceTable } from '../../../gateway/devices/device-table.js'
import { startGateway } from '../../../gateway/gateway.js'
import { defaultGatewayConfig } from '../../../gateway/config/gateway-config.js'
import { openGatewayDatabase } from '../../../gateway/store/gateway-database.js'
import { errorMessage } from '../../../runtime/errors.js'
import { createLogger } from '../../../runtime/logger.js'
import { SECRETS_FILE, type GatewayMode } from './gateway-shared.js'

const [what, ...rest] = process.argv.slice(2)

async function gateway(mode: GatewayMode): Promise<void> {
  const config = defaultGatewayConfig()
  config.auth.enabled = mode.auth
  config.persistence = mode.persistence
  if (mode.dataDir !== undefined) config.dataDir = mode.dataDir
  // stdout carries this process's one line to the bench; the gateway's own lines go to stderr,
  // errors only (the line that says authentication is off is the mode the row names already).
  const logger = createLogger({ name: 'gateway', level: 'error', format: 'json', out: process.stderr })
  const gw = await startGateway({ config, port: 0, logger })
  process.stdout.write(`${JSON.stringify({ url: gw.broker.url })}\n`)
  process.once('SIGTERM', () => void gw.close().then(() => process.exit(0)))
}

async function plainAedes(): Promise<void> {
  const aedes = await Aedes.createBroker()
  // TCP_NODELAY as the gateway's listener has it, or QoS 1 acknowledgements wait on delayed ACKs.
  const server = net.createServer({ noDelay: true }, (socket) => aedes.handle(socket))
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  process.stdout.write(`${JSON.stringify({ url: `mqtt://127.0.0.1:${(server.address() as net.AddressInfo).port}` })}\n`)
  process.once('SIGTERM', () => process.exit(0))
}

function seed(dataDir: string, ids: string[]): void {
  const database = openGatewayDatabase(path.join(dataDir, 'gateway.db'))
  try {
    const devices = createDeviceTable(database)
    const secrets: Record<string, string> = {}
    for (const id of ids) secrets[id] = devices.add(id, 'device').secret
    writeFileSync(path.join(dataDir, SECRETS_FILE), JSON.stringify(secrets))
  } finally {
    database.close()
  }
}

try {
  if (what === 'gateway') await gateway(JSON.parse(rest[0]!) as GatewayMode)
  else if (what === 'aedes') await plainAedes()
  else if (what === 'seed') {
    seed(rest[0]!, JSON.parse(rest[1]!) as string[])
    process.exit(0)
  } else throw new Error(`gateway-broker: unknown system ${String(what)}`)
} catch (err) {
  // One line the bench repeats (a part of the gateway not built yet, a port taken), not a stack.
  process.stderr.write(`gateway-broker ${what}: ${errorMessage(err)}\n`)
  process.exit(1)
}
