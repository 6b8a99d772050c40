// What the gateway's JetStream stream holds, decoded (as `nats stream view` would show it), and
// then per thermo whether its samples are all there: each sample.completed carries the thermo's
// running count of readings, so a lost event is a missing number.
import { jetstream, jetstreamManager } from '@nats-io/jetstream'
import { connect } from '@nats-io/transport-node'
import { readForwarded } from 'outpost/cloud'
import { STREAM } from './targets.js'

const nc = await connect({ servers: process.env.NATS_URL ?? 'nats://127.0.0.1:4222' })
const { state } = await (await jetstreamManager(nc)).streams.info(STREAM)
const samples = new Map<string, number[]>() // device → the sample numbers in the stream

if (state.messages > 0) {
  // An ordered consumer: reads from the first message; ephemeral, NATS removes it once it is idle.
  for await (const m of await (await jetstream(nc).consumers.get(STREAM)).consume()) {
    const e = readForwarded(m.data, m.headers)
    console.log(`#${m.seq} ${new Date(e.at).toISOString()} ${e.device} ${e.service}/${e.version}/${e.event} ${JSON.stringify(e.payload)}`)
    if (e.event === 'sample.completed') samples.set(e.device, [...(samples.get(e.device) ?? []), (e.payload as { output: { readings: number } }).output.readings])
    if (m.info.pending === 0) break
  }
}
console.log(`${STREAM}: ${state.messages} messages`)
for (const [device, seen] of samples) {
  const first = Math.min(...seen)
  const last = Math.max(...seen)
  const missing = last - first + 1 - new Set(seen).size
  console.log(`${device}: samples #${first} to #${last}, ${missing} missing, ${seen.length - new Set(seen).size} twice`)
}
await nc.close()
