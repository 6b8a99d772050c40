// Connect storm of the gateway benchmark: `count` plain MQTT.js clients (device ids
// `storm-0000`…, each with its own secret where the broker asks for one) all start connecting
// in the same turn of the event loop. Prints {all_connected_ms, connected, failed, p50_us,
// p99_us, clients_created_ms} once every one is connected or has failed, then keeps the
// connections open until SIGTERM: the bench reads the broker's memory with them connected.
// Times run from the end of that turn: creating 1,000 MQTT.js clients takes this process most
// of a second, and no CONNECT leaves before it is over (clients_created_ms says how long).
import { readFileSync } from 'node:fs'
import mqtt from 'mqtt'
import { stormId } from './gateway-shared.js'

const [url, countArg, secretsFile] = process.argv.slice(2) as [string, string, string | undefined]
const count = Number(countArg)
const secrets = secretsFile === undefined || secretsFile === '' ? {} : (JSON.parse(readFileSync(secretsFile, 'utf8')) as Record<string, string>)

// Held until the process exits: the connections are what the bench measures the broker with.
const clients: mqtt.MqttClient[] = []
const errors = new Map<string, number>()
const created0 = performance.now()
let t0 = 0
const pending = Array.from({ length: count }, (_, i) => {
  const id = stormId(i)
  // No retry and a long CONNECT timeout: a login that waits its turn is timed, not sent again.
  const c = mqtt.connect(url, { clientId: id, username: id, password: secrets[id], clean: true, reconnectPeriod: 0, connectTimeout: 300_000, keepalive: 300 })
  clients.push(c)
  return new Promise<number | undefined>((resolve) => {
    let settled = false
    c.once('connect', () => {
      settled = true
      resolve(performance.now() - t0)
    })
    const fail = (why: string): void => {
      if (settled) return
      settled = true
      errors.set(why, (errors.get(why) ?? 0) + 1)
      resolve(undefined)
    }
    // Kept for the client's life: an 'error' with no listener would throw.
    c.on('error', (err) => fail(err.message.slice(0, 80)))
    c.once('close', () => fail('closed before CONNACK'))
  })
})
t0 = performance.now()
const times = await Promise.all(pending)
const connected = times.filter((t): t is number => t !== undefined).sort((a, b) => a - b)
const pick = (q: number): number => Math.round((connected[Math.min(connected.length - 1, Math.floor(q * connected.length))] ?? 0) * 1000)
process.stdout.write(
  `${JSON.stringify({
    all_connected_ms: Math.round(connected.at(-1) ?? 0),
    connected: connected.length,
    failed: count - connected.length,
    ...(errors.size === 0 ? {} : { errors: [...errors].map(([why, n]) => `${n}× ${why}`).join('; ') }),
    p50_us: pick(0.5),
    p99_us: pick(0.99),
    clients_created_ms: Math.round(t0 - created0),
  })}\n`,
)
process.once('SIGTERM', () => process.exit(0))
