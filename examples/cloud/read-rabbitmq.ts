// Takes the events waiting in the gateway's durable RabbitMQ queue, prints them and acknowledges
// them, as the warehouse's consumer would. RabbitMQ may hand an event over twice (after the
// gateway lost its connection): a consumer keeps the first of each id.
import amqp from 'amqplib'
import { readForwarded } from 'outpost/cloud'
import { QUEUE as WAREHOUSE_QUEUE } from './targets.js'

const QUEUE = process.argv[2] ?? WAREHOUSE_QUEUE
const connection = await amqp.connect(process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672')
const channel = await connection.createChannel()
const seen = new Set<string>()
for (let m = await channel.get(QUEUE); m !== false; m = await channel.get(QUEUE)) {
  const e = readForwarded(m.content, m.properties.headers)
  if (!seen.has(e.id)) console.log(`${e.id} ${e.device} ${e.service}/${e.version}/${e.event} ${JSON.stringify(e.payload)}`)
  seen.add(e.id)
  channel.ack(m)
}
console.log(`${QUEUE}: took ${seen.size} events`)
await connection.close()
