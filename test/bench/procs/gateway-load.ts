// Load of the gateway benchmark's throughput figure: plain MQTT.js clients, as devices would
// be. Publishers send QoS 1 Outpost events (kind event, src = their own id, on
// `ob/<id>/evt/bench/1/reading`, so the gateway's ACL and its src check see every one) to one
// subscriber with a persistent session (the broker keeps its QoS 1 messages in its persistence
// until acknowledged). At most WINDOW messages are out that the subscriber has not received:
// a broker is never asked to queue more than that for it (Mosquitto would drop QoS 1 messages
// past its max_queued_messages, 1,000 by default). Prints {ops_per_s, p50_us, p99_us, ...}:
// messages received per second in the measured window, publish → receipt latency, and the CPU
// per message of the broker (`brokerPid`) and of this process.
import { readFileSync } from 'node:fs'
import type net from 'node:net'
import mqtt from 'mqtt'
import { createEnvelopeCodec } from '../../../runtime/wire/codec.js'
import type { Envelope } from '../../../runtime/wire/envelope.js'
import { cpuUs } from '../cross-process.js'
import { publisherId, SUBSCRIBER_ID } from './gateway-shared.js'

/** What the bench asks of one run. */
export interface GatewayLoadOptions {
  url: string
  /** The broker's process, whose CPU per message is read around the measured window (absent: not read). */
  brokerPid?: number
  /** Device id → secret (procs/gateway-broker.ts seed); absent where the broker asks for none. */
  secretsFile?: string
  publishers: number
  window: number
  warmupMs: number
  durationMs: number
}

const opts = JSON.parse(process.argv[2]!) as GatewayLoadOptions
const secrets = opts.secretsFile === undefined ? {} : (JSON.parse(readFileSync(opts.secretsFile, 'utf8')) as Record<string, string>)
const SUBSCRIBER = SUBSCRIBER_ID
const FILTER = 'ob/+/evt/bench/1/reading'
const publisherIds = Array.from({ length: opts.publishers }, (_, i) => publisherId(i))

async function connect(id: string, clean: boolean): Promise<mqtt.MqttClient> {
  const c = await mqtt.connectAsync(opts.url, { clientId: id, username: id, password: secrets[id], clean, reconnectPeriod: 0, connectTimeout: 30_000 })
  ;(c.stream as net.Socket).setNoDelay?.(true)
  return c
}

// A session left by an earlier run on a broker that lives on (Mosquitto) is dropped first.
await (await connect(SUBSCRIBER, true)).endAsync()
const sub = await connect(SUBSCRIBER, false)
const granted = await sub.subscribeAsync(FILTER, { qos: 1 })
if (granted[0]?.qos !== 1) throw new Error(`subscription to ${FILTER} granted ${String(granted[0]?.qos)}, not QoS 1`)
const pubs = await Promise.all(publisherIds.map((id) => connect(id, true)))

const codec = createEnvelopeCodec()
const inst = `bench-${process.pid}`
let published = 0
let received = 0
let measuring = false
let latencies: number[] = []
let publishErrors = 0
sub.on('message', (_topic, payload) => {
  received++
  if (measuring) {
    const decoded = codec.decode(payload)
    if (decoded.ok) latencies.push((performance.now() - (decoded.envelope.payload as { t: number }).t) * 1000)
  }
  pump()
})

let stopped = false
let drained: (() => void) | undefined
/** Publishes round robin over the publishers while fewer than `window` messages are on their way. */
function pump(): void {
  while (!stopped && published - received < opts.window) {
    const i = published++
    const pub = i % pubs.length
    const env: Envelope = { v: 1, kind: 'event', id: `${inst}-${i}`, src: publisherIds[pub]!, inst, at: Date.now(), service: 'bench', version: '1', name: 'reading', payload: { seq: i, t: performance.now(), temperature: 20 + (i % 50) / 10, humidity: 55 } }
    pubs[pub]!.publish(`ob/${publisherIds[pub]}/evt/bench/1/reading`, Buffer.from(codec.encode(env)), { qos: 1 }, (err) => {
      if (err) publishErrors++
    })
  }
  if (stopped && received >= published) drained?.()
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
pump()
await sleep(opts.warmupMs)
measuring = true
latencies = []
const received0 = received
const cpu0 = { broker: cpuUs(opts.brokerPid), self: process.cpuUsage() }
const t0 = performance.now()
await sleep(opts.durationMs)
const count = received - received0
const seconds = (performance.now() - t0) / 1000
const brokerCpu = cpuUs(opts.brokerPid) - cpu0.broker
const selfCpu = process.cpuUsage(cpu0.self)
measuring = false
// What is still on its way must arrive: a message the broker lost is counted, not hidden.
stopped = true
await Promise.race([new Promise<void>((r) => ((drained = r), pump())), sleep(10_000)])
const lost = published - received

latencies.sort((a, b) => a - b)
const pick = (q: number): number => Math.round(latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0)
const perMessage = (us: number): number => Math.round((us / Math.max(1, count)) * 10) / 10
process.stdout.write(
  `${JSON.stringify({
    ops_per_s: Math.round(count / seconds),
    p50_us: pick(0.5),
    p99_us: pick(0.99),
    messages: count,
    lost,
    publish_errors: publishErrors,
    cpu_us_per_op_broker: opts.brokerPid === undefined ? null : perMessage(brokerCpu),
    cpu_us_per_op_clients: perMessage(selfCpu.user + selfCpu.system),
  })}\n`,
)
await Promise.all(pubs.map((p) => p.endAsync()))
// The persistent session goes with the run: a broker that lives on keeps nothing for it.
await sub.endAsync()
await (await connect(SUBSCRIBER, true)).endAsync()
process.exit(0)
