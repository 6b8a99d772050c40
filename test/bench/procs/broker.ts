// Broker process for the cross-process benchmark: aedes on a free port, as the gateway runs it.
import { startMqttBroker } from '../../../gateway/broker/mqtt-broker.js'

const broker = await startMqttBroker({ port: 0 })
process.stdout.write(`${JSON.stringify({ url: broker.url })}\n`)
process.on('SIGTERM', () => void broker.close().then(() => process.exit(0)))
