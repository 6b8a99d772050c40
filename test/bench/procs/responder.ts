import { systems, type SystemName } from './mqtt-systems.js'

const [system, url] = process.argv.slice(2) as [SystemName, string]
const stop = await systems[system].respond(url)
process.stdout.write('ready\n')
process.on('SIGTERM', () => void stop().finally(() => process.exit(0)))
