// /metrics of a real gateway process (`outpost gateway --config`, authentication on, the NATS and
// RabbitMQ command front ends on the real servers) after each thing its counters count is caused
// from outside: contract documents kept and ignored (a device over MQTT, written by hand), cloud
// command requests answered, failed, published without a reply address, whose reply was lost
// (the queue deleted while the command ran), and redelivered until dropped (a reply-to that makes
// RabbitMQ close the connection). These counts were only in the logs before.
import { randomBytes } from 'node:crypto'
import amqp from 'amqplib'
import { connect as natsConnect } from '@nats-io/transport-node'
import type { MqttClient } from 'mqtt'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FIELD, presenceSlots, rawDecoder, rawFrame, rawId, replySlots } from '../helpers/raw-wire.js'
import { startGatewayProcess, type GatewayProcess } from './gateway-attack-process.js'

const NATS_URL = 'nats://127.0.0.1:4222'
const AMQP_URL = 'amqp://guest:guest@127.0.0.1:5672'
const tag = randomBytes(4).toString('hex')
const SUBJECT = `cmdmetrics.${tag}`
const QUEUE = `cmdmetrics.${tag}`

let gw: GatewayProcess

/** A contract envelope (kind 4 on the wire) from `src`, process `raw-inst`. */
const contractFrame = (src: string, document: unknown): Buffer => rawFrame([1, 4, rawId(), src, 'raw-inst', Date.now(), null, null, null, null, null, null, null, null, null, null, document])
const DOCUMENT = { v: 1, dialect: 'draft-07', services: [{ name: 'probe', version: '1', commands: { set: { payload: { type: 'object' } } }, events: {} }] }

/** The value of one series in Prometheus text (labels as written, in their order), or undefined when it is not there. */
function valueOf(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}
const scrape = async (): Promise<string> => (await gw.get('/metrics')).text()
/** Scrapes until `series` has `value` (30 s at most); the last scrape. */
async function until(series: string, value: number): Promise<string> {
  let text = await scrape()
  for (const end = Date.now() + 30_000; valueOf(text, series) !== value && Date.now() < end; text = await scrape()) await new Promise((r) => setTimeout(r, 100))
  // On a failure, the gateway's other counters of the same family say where the frame went.
  const family = series.replace(/_total.*$/, '').replace(/_(recorded|ignored|handled|failed|no_reply|reply_lost|redelivered|redelivery_dropped)$/, '')
  const related = text.split('\n').filter((l) => l.startsWith(family) || l.startsWith('outpost_gateway_denied') || l.startsWith('outpost_gateway_auth')).join('\n')
  expect(valueOf(text, series), `${series}\n${related}`).toBe(value)
  return text
}

beforeAll(async () => {
  gw = await startGatewayProcess({
    devices: ['meter-1', 'meter-2'],
    extra: `commands:\n  nats: { servers: ${NATS_URL}, subject: ${SUBJECT}, queueGroup: q${tag} }\n  rabbitmq: { url: '${AMQP_URL}', queue: ${QUEUE}, prefetch: 4 }\n`,
  })
}, 60_000)

afterAll(async () => {
  await gw?.stop()
  // After the gateway: its front end would declare the queue again.
  const conn = await amqp.connect(AMQP_URL)
  const ch = await conn.createChannel()
  await ch.deleteQueue(QUEUE).catch(() => {})
  await conn.close()
}, 60_000)

describe('/metrics: contract documents and cloud command front ends', () => {
  let meter: MqttClient
  /** Whether meter-1 answers the commands it gets; every command it got, by id. */
  let answering = true
  const received: string[] = []

  it('every series is there from the start, at 0', async () => {
    const text = await scrape()
    for (const series of [
      'outpost_gateway_contracts_recorded_total',
      'outpost_gateway_cloud_commands_handled_total{front_end="nats"}',
      'outpost_gateway_cloud_commands_handled_total{front_end="rabbitmq"}',
      'outpost_gateway_cloud_commands_no_reply_total{front_end="nats"}',
      'outpost_gateway_cloud_commands_no_reply_total{front_end="rabbitmq"}',
      'outpost_gateway_cloud_commands_reply_lost_total{front_end="rabbitmq"}',
      'outpost_gateway_cloud_commands_reply_refused_total{front_end="nats"}',
      'outpost_gateway_cloud_commands_reply_refused_total{front_end="rabbitmq"}',
      'outpost_gateway_cloud_commands_redelivered_total{front_end="rabbitmq"}',
      'outpost_gateway_cloud_commands_redelivery_dropped_total{front_end="rabbitmq"}',
    ]) {
      expect(valueOf(text, series), series).toBe(0)
    }
    expect(text).toContain('# HELP outpost_gateway_contracts_ignored_total Contract frames the registry did not keep')
    expect(text).toContain('# TYPE outpost_gateway_cloud_commands_failed_total counter')
  })

  it('contract documents kept, and ignored by reason', async () => {
    meter = await gw.connect('meter-1')
    meter.on('message', (topic, payload) => {
      const cmd = rawDecoder.decode(payload) as unknown[]
      received.push(String(cmd[FIELD.id]))
      if (!answering) return
      const replyTo = String(cmd[FIELD.replyTo])
      void meter.publishAsync(`ob/meter-1/rep/${replyTo}`, rawFrame(replySlots({ src: 'meter-1', corr: String(cmd[FIELD.id]), replyTo, payload: { ok: true } })), { qos: 1 })
    })
    await meter.subscribeAsync('ob/+/cmd/meter-1/#', { qos: 1 })
    await meter.publishAsync('ob/meter-1/status', rawFrame(presenceSlots({ src: 'meter-1', services: [{ name: 'probe', version: '1', commands: ['set'], events: [] }] })), { qos: 1, retain: true })
    await meter.publishAsync('ob/meter-1/contract', contractFrame('meter-1', DOCUMENT), { qos: 1, retain: true })
    await until('outpost_gateway_contracts_recorded_total', 1)
    // The broker refuses frames that are no envelope or name another sender (authentication is
    // on): what reaches the registry and is ignored there is a contract envelope without a document…
    await meter.publishAsync('ob/meter-1/contract', contractFrame('meter-1', 'not a document'), { qos: 1 })
    await until('outpost_gateway_contracts_ignored_total{reason="payload"}', 1)
    // …and the document of a device the registry does not know yet (no presence).
    const other = await gw.connect('meter-2')
    await other.publishAsync('ob/meter-2/contract', contractFrame('meter-2', DOCUMENT), { qos: 1 })
    await other.endAsync()
    const text = await until('outpost_gateway_contracts_ignored_total{reason="unknown"}', 1)
    expect(valueOf(text, 'outpost_gateway_contracts_recorded_total')).toBe(1)
  }, 60_000)

  it('NATS: answered, failed by code, and published without a reply subject', async () => {
    const nc = await natsConnect({ servers: NATS_URL })
    try {
      const ok = await nc.request(`${SUBJECT}.meter-1.probe.1.set`, '{}', { timeout: 20_000 })
      expect(ok.json()).toEqual({ result: { ok: true } })
      await until('outpost_gateway_cloud_commands_handled_total{front_end="nats"}', 1)
      const unknown = await nc.request(`${SUBJECT}.nobody.probe.1.set`, '{}', { timeout: 20_000 })
      expect(unknown.headers?.get('Outpost-Error')).toBe('DEVICE_UNKNOWN')
      await until('outpost_gateway_cloud_commands_failed_total{front_end="nats",code="DEVICE_UNKNOWN"}', 1)
      nc.publish(`${SUBJECT}.meter-1.probe.1.set`, '{}')
      await until('outpost_gateway_cloud_commands_no_reply_total{front_end="nats"}', 1)
    } finally {
      await nc.close()
    }
  }, 60_000)

  it('RabbitMQ: no replyTo, a reply lost while the command ran, and a request redelivered until it is dropped', async () => {
    const conn = await amqp.connect(AMQP_URL)
    try {
      const ch = await conn.createChannel()
      const body = (o: object): Buffer => Buffer.from(JSON.stringify({ service: 'probe', version: '1', command: 'set', ...o }))
      ch.sendToQueue(QUEUE, body({ device: 'meter-1' }), { correlationId: 'nobody-listens' })
      let text = await until('outpost_gateway_cloud_commands_no_reply_total{front_end="rabbitmq"}', 1)
      expect(valueOf(text, 'outpost_gateway_cloud_commands_redelivered_total{front_end="rabbitmq"}')).toBe(0)

      // A direct reply-to name that is not one: RabbitMQ closes the front end's connection when
      // the reply goes there, the request comes back (redelivered) on each new one, and is dropped
      // at its 6th delivery.
      ch.sendToQueue(QUEUE, body({ device: 'nobody' }), { replyTo: 'amq.rabbitmq.reply-to.g1h2AA5yZXBseUAyNzc4NjI1MgAAC2AAAAAAYQ==.garbage', correlationId: 'again' })
      text = await until('outpost_gateway_cloud_commands_redelivery_dropped_total{front_end="rabbitmq"}', 1)
      expect(valueOf(text, 'outpost_gateway_cloud_commands_redelivered_total{front_end="rabbitmq"}')).toBe(5)
      expect(valueOf(text, 'outpost_gateway_cloud_commands_failed_total{front_end="rabbitmq",code="DEVICE_UNKNOWN"}')).toBeGreaterThanOrEqual(1)
      expect(valueOf(text, 'outpost_gateway_cloud_commands_reply_lost_total{front_end="rabbitmq"}')).toBe(0)
      // The front end is consuming again.
      for (const end = Date.now() + 30_000; (await ch.checkQueue(QUEUE)).consumerCount !== 1 && Date.now() < end; ) await new Promise((r) => setTimeout(r, 100))

      // meter-1 gets the command and does not answer; the queue is deleted meanwhile (the
      // consumer is cancelled): when the deadline passes, the reply has nowhere to go.
      answering = false
      const { queue: replies } = await ch.assertQueue('', { exclusive: true })
      const before = received.length
      ch.sendToQueue(QUEUE, body({ device: 'meter-1', timeoutMs: 5_000 }), { replyTo: replies, correlationId: 'lost' })
      for (const end = Date.now() + 20_000; received.length === before && Date.now() < end; ) await new Promise((r) => setTimeout(r, 50))
      expect(received.length).toBe(before + 1)
      await ch.deleteQueue(QUEUE)
      text = await until('outpost_gateway_cloud_commands_reply_lost_total{front_end="rabbitmq"}', 1)
      expect(await ch.get(replies)).toBe(false)
      expect(gw.alive()).toBe(true)
    } finally {
      await conn.close().catch(() => {})
      await meter?.endAsync(true)
    }
  }, 120_000)
})
