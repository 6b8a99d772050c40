// `nats request <subject> <body>`, for a machine without the nats CLI: sends one request, prints the reply.
import { connect } from '@nats-io/transport-node'

const [subject = 'outpost.cmd.thermo-1.thermo.1.read', body = '{}'] = process.argv.slice(2)
const server = process.env.NATS_URL ?? 'nats://127.0.0.1:4222'
try {
  const nc = await connect({ servers: server })
  try {
    const reply = await nc.request(subject, body, { timeout: 12_000 }) // the gateway answers TIMEOUT itself after 10 s
    console.log(reply.string())
  } finally {
    await nc.close()
  }
} catch (err) {
  // No stack trace: what failed and where.
  console.error(`nats-request: ${subject} at ${server}: ${err instanceof Error ? err.message : String(err)}`)
  process.exitCode = 1
}
