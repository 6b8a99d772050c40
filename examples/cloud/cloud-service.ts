// A cloud service on NATS (examples/cloud/README.md runs it). It is an Outpost service like the
// ones on the devices, on the NATS bridge instead of MQTT. It calls a device behind the gateway
// through the gateway's NATS command front end, and reads the events the gateway forwarded to
// the JetStream stream.
import { AckPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream'
import { connect } from '@nats-io/transport-node'
import * as v from 'valibot'
import { createNatsBridge } from 'outpost/bridges/nats'
import { createCloudClient, readForwarded, type CloudClient, type ForwardedEvent } from 'outpost/cloud'
import { defineContract, defineService, resource } from 'outpost/contracts'
import { createRuntime, isOutpostError } from 'outpost/runtime'
// The contract the demo thermo implements. Cloud code imports its devices' contracts the same way.
import { thermoContract } from '../../devices/contracts/thermo.js'
import { STREAM } from './targets.js'

const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222'

// This service's own contract: what other Outpost services on NATS may ask of it.
const fleet = defineContract({
  name: 'fleet',
  version: '1',
  commands: {
    check: {
      payload: v.object({ device: v.string() }),
      result: v.object({ device: v.string(), celsius: v.number(), at: v.number() }),
    },
  },
})

const fleetService = defineService(fleet, {
  resources: { devices: resource<CloudClient>() },
  commands: {
    // The device is called with the contract it implements: the payload and result are typed and checked.
    check: async ({ device }, ctx) => {
      const thermo = ctx.resources.devices.client(thermoContract, { device })
      const { value, at } = await thermo.read({ unit: 'C' })
      return { device, celsius: value, at }
    },
  },
})

const nc = await connect({ servers: NATS_URL, maxReconnectAttempts: -1 }) // keeps trying while NATS is away
const runtime = createRuntime({
  bridge: createNatsBridge({ servers: NATS_URL, deviceId: 'cloud-1' }),
  services: [fleetService],
  resources: { devices: createCloudClient({ nats: nc }) },
})
await runtime.start({ waitForBroker: true })

// (a) Any Outpost service on this NATS calls fleet.check like this; here the service calls itself once.
try {
  const r = await runtime.client(fleet).check({ device: 'thermo-1' })
  console.log(`fleet.check: ${r.device} reads ${r.celsius} °C`)
} catch (err) {
  console.log(`fleet.check failed: ${isOutpostError(err) ? err.code : ''} ${(err as Error).message}`)
}

// (b) The forwarded events, from a durable consumer: after a restart it goes on where it stopped.
const jsm = await jetstreamManager(nc)
// The gateway creates the stream when it first reaches NATS.
while (!(await jsm.streams.info(STREAM).then(() => true, () => false))) await new Promise((r) => setTimeout(r, 1_000))
await jsm.consumers.add(STREAM, { durable_name: 'cloud-service', ack_policy: AckPolicy.Explicit })
const messages = await (await jetstream(nc).consumers.get(STREAM, 'cloud-service')).consume()
process.once('SIGINT', () => void runtime.stop().then(() => messages.close()).then(() => nc.drain()))

for await (const m of messages) {
  const e = readForwarded(m.data, m.headers)
  console.log(`jetstream #${m.seq} ${e.device} ${e.service}/${e.version}/${e.event}: ${summary(e)}`)
  m.ack()
}

/** One line for an event, its payload checked against the thermo's contract. */
function summary(e: ForwardedEvent): string {
  if (e.event === 'reading') return `${v.parse(thermoContract.events.reading, e.payload).celsius} °C`
  if (e.event === 'sample.completed') {
    const { output } = v.parse(thermoContract.events['sample.completed'], e.payload)
    return `sample #${output.readings}: ${output.celsius} °C (min ${output.min}, max ${output.max})`
  }
  return JSON.stringify(e.payload)
}
