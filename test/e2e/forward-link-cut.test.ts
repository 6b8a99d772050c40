// Outside test (issue 14): device processes publish thousands of events through a gateway that
// forwards them to NATS JetStream and RabbitMQ (the real servers), each behind a TCP proxy. The
// cloud link is cut in the middle of the stream and restored later. JetStream must hold every
// event exactly once (Nats-Msg-Id dedupe), the RabbitMQ queue every event id at least once, and
// the gateway's forward queue must end empty.
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { jetstreamManager } from '@nats-io/jetstream'
import { connect as natsConnect } from '@nats-io/transport-node'
import amqp from 'amqplib'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { defaultGatewayConfig } from '../../gateway/config/gateway-config.js'
import type { ForwardConfig } from '../../gateway/forward/forward-config.js'
import { startGateway, type Gateway } from '../../gateway/index.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { startProcess, type TestProcess } from '../helpers/device-process.js'
import { buildHelperProcess } from '../helpers/processes.js'
import { tcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js'
import { until } from '../helpers/wait.js'

const DEVICES = 3
const PER_DEVICE = 2_000
const TOTAL = DEVICES * PER_DEVICE

const portOf = (p: TcpProxy): number => Number(new URL(p.url).port)

describe('forwarding to NATS JetStream and RabbitMQ across a cloud link cut', () => {
  const cleanup = cleanupAfterEach()

  it('JetStream holds every event once, RabbitMQ got every id, the forward queue ends empty', async () => {
    const tag = randomBytes(4).toString('hex')
    const stream = `FWD_CUT_${tag}`
    const subjectRoot = `fwdcut${tag}`
    const exchange = `fwd.cut.${tag}`
    const queue = `fwd.cut.${tag}.q`
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-fwd-cut-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))

    const natsProxy = await tcpProxy('nats://127.0.0.1:4222')
    const rabbitProxy = await tcpProxy('amqp://127.0.0.1:5672')
    cleanup(() => natsProxy.close(), () => rabbitProxy.close())

    // The cloud side, reached directly (not through the proxies).
    const nc = await natsConnect({ servers: '127.0.0.1:4222' })
    cleanup(() => nc.close())
    const jsm = await jetstreamManager(nc)
    cleanup(() => jsm.streams.delete(stream).catch(() => {}))
    const amqpConn = await amqp.connect('amqp://guest:guest@127.0.0.1:5672')
    cleanup(() => amqpConn.close().catch(() => {}))
    const ch = await amqpConn.createChannel()
    cleanup(() => ch.deleteExchange(exchange).catch(() => {}), () => ch.deleteQueue(queue).catch(() => {}))

    const forward: ForwardConfig = {
      targets: {
        js: {
          type: 'nats', servers: [`nats://127.0.0.1:${portOf(natsProxy)}`], encoding: 'cbor', window: 256, confirmTimeoutMs: 5_000, maxBytes: 1 << 30, whenFull: 'refuse',
          stream: { name: stream, subjects: [`${subjectRoot}.>`], create: true, duplicateWindowMs: 600_000 },
          subject: `${subjectRoot}.{device}.{service}.{event}`,
        },
        rabbit: {
          type: 'rabbitmq', url: `amqp://guest:guest@127.0.0.1:${portOf(rabbitProxy)}`, encoding: 'json', window: 256, confirmTimeoutMs: 5_000, maxBytes: 1 << 30, whenFull: 'refuse',
          exchange: { name: exchange, type: 'topic', create: true }, queue: { name: queue, bindingKey: '#' }, routingKey: '{device}.{service}.{event}',
        },
      },
      routes: [{ events: ['meter/1/reading'], devices: ['*'], to: ['js', 'rabbit'] }],
    }
    const config = { ...defaultGatewayConfig(), dataDir: dir, persistence: 'sqlite' as const, forward }
    const gw: Gateway = await startGateway({ config, port: 0, logger: pino({ level: 'error' }) })
    cleanup(() => gw.close())
    const forwarded = (t: string): number => gw.forwarder!.stats().targets[t]!.forwarded

    const script = await buildHelperProcess('event-device')
    const devices: TestProcess[] = []
    for (let i = 0; i < DEVICES; i++) {
      const p = startProcess(script, [path.join(dir, `meter-${i}.db`), gw.broker.url, `meter-${i}`, String(PER_DEVICE), '20', '10'], {})
      cleanup(() => p.kill())
      devices.push(p)
    }
    // A third of the stream through, then the cloud link goes; the devices go on publishing.
    await until(() => forwarded('js') >= TOTAL / 3 && forwarded('rabbit') >= TOTAL / 3, 60_000)
    await natsProxy.down()
    await rabbitProxy.down()
    const atCut = { js: forwarded('js'), rabbit: forwarded('rabbit') }
    for (const d of devices) await d.waitFor(`emitted ${PER_DEVICE}`, 60_000)
    // Everything the devices emitted is acknowledged by the gateway: on its disk, not forwarded yet.
    for (const d of devices) await d.waitFor('drained', 60_000)
    const waiting = gw.forwarder!.stats().targets
    expect(waiting.js!.backlog.messages + atCut.js).toBeGreaterThanOrEqual(TOTAL - 256)
    expect(waiting.js!.state).not.toBe('up')
    await natsProxy.up()
    await rabbitProxy.up()
    await until(() => {
      const t = gw.forwarder!.stats().targets
      return t.js!.backlog.messages === 0 && t.rabbit!.backlog.messages === 0
    }, 120_000)

    // JetStream: each id once (the duplicate window covers re-sends after the cut).
    const info = await jsm.streams.info(stream)
    expect(info.state.messages).toBe(TOTAL)
    // RabbitMQ: every id at least once.
    const ids = new Map<string, number>()
    const readings = new Set<string>()
    for (;;) {
      const m = await ch.get(queue, { noAck: true })
      if (m === false) break
      ids.set(String(m.properties.messageId), (ids.get(String(m.properties.messageId)) ?? 0) + 1)
      const body = JSON.parse(m.content.toString('utf8')) as { device: string; payload: { n: number } }
      readings.add(`${body.device}:${body.payload.n}`)
    }
    expect(ids.size).toBe(TOTAL)
    expect(readings.size).toBe(TOTAL)
    const s = gw.forwarder!.stats()
    expect(s.dropped).toEqual({})
    expect(s.targets.js!.dead + s.targets.rabbit!.dead).toBe(0)
    console.log(`link cut: JetStream ${info.state.messages} stored (${s.targets.js!.duplicates} re-sends deduplicated), RabbitMQ ${[...ids.values()].reduce((a, b) => a + b, 0)} deliveries of ${ids.size} ids; retried js ${s.targets.js!.retried}, rabbit ${s.targets.rabbit!.retried}`)
  }, 240_000)
})
