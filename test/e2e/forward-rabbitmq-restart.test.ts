// Outside test: a gateway process (`outpost gateway --config`) forwards the events of device
// processes to the local RabbitMQ (durable exchange and queue, as a gateway config declares them),
// and RabbitMQ itself is restarted in the middle of the stream (`rabbitmqctl stop_app`, a few
// seconds down while devices go on publishing and more devices start, `start_app`). The gateway
// must stay up, reconnect, drain its backlog, and the queue must hold every event id at least
// once (RabbitMQ has no dedupe window: re-sends of what was unconfirmed at the stop may appear
// twice). RabbitMQ is always started again and awaited, even when the test fails.
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import amqp from 'amqplib'
import { afterEach, describe, expect, it } from 'vitest'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { startProcess, type TestProcess } from '../helpers/device-process.js'
import { startGatewayCli, type GatewayCli } from '../helpers/gateway-cli.js'
import { buildHelperProcess } from '../helpers/processes.js'
import { RABBIT_URL, rabbitUp, stopRabbitApp } from '../helpers/rabbitmq-app.js'
import { until } from '../helpers/wait.js'

/** Devices publishing from the start, and devices started while RabbitMQ is down. */
const EARLY = 2
const LATE = 2
const PER_DEVICE = 2_500
const TOTAL = (EARLY + LATE) * PER_DEVICE
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

interface TargetView {
  state: string
  forwarded: number
  retried: number
  connectFailures: number
  inFlight: number
  dead: number
  backlog: { messages: number; bytes: number }
  dropped: Record<string, number>
}
interface ForwardView {
  targets: Record<string, TargetView>
  dropped: Record<string, number>
}

/** Polls an async check until it holds. @throws after `ms`, with what `describe` says of the last state */
async function eventually<T>(read: () => Promise<T>, check: (v: T) => boolean, ms: number, what: string): Promise<T> {
  const end = Date.now() + ms
  let last: T | undefined
  for (;;) {
    last = await read().catch(() => last)
    if (last !== undefined && check(last)) return last
    if (Date.now() > end) throw new Error(`${what}: not reached within ${ms} ms; last: ${JSON.stringify(last)}`)
    await sleep(100)
  }
}

describe('forwarding to RabbitMQ across a restart of RabbitMQ', () => {
  const cleanup = cleanupAfterEach()
  let queue: string | undefined
  let exchange: string | undefined

  // Whatever happened, RabbitMQ runs again and takes clients before the next test; then this
  // test's queue and exchange go.
  afterEach(async () => {
    await rabbitUp()
    if (queue === undefined || exchange === undefined) return
    const conn = await amqp.connect(RABBIT_URL)
    conn.on('error', () => {})
    const ch = await conn.createChannel()
    await ch.deleteQueue(queue).catch(() => {})
    await ch.deleteExchange(exchange).catch(() => {})
    await conn.close().catch(() => {})
    queue = exchange = undefined
  }, 120_000)

  it('the gateway stays up, drains its backlog, and the queue holds every event id', async () => {
    await rabbitUp()
    const tag = randomBytes(4).toString('hex')
    exchange = `fwd.restart.${tag}`
    queue = `fwd.restart.${tag}.q`
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-fwd-rabbit-restart-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    mkdirSync(path.join(dir, 'data'))
    const configFile = path.join(dir, 'gateway.yaml')
    writeFileSync(
      configFile,
      `dataDir: data
persistence: sqlite
auth: { enabled: false }
mqtt: { port: 0 }
http: { enabled: true, port: 0 }
log: { level: info, format: json }
forward:
  targets:
    rabbit:
      type: rabbitmq
      url: ${RABBIT_URL}
      encoding: json
      whenFull: refuse
      exchange: { name: ${exchange} }
      queue: { name: ${queue}, bindingKey: '#' }
  routes:
    - { devices: ['meter-*'], to: [rabbit] }
`,
    )
    const lines: string[] = []
    const gw: GatewayCli = await startGatewayCli(configFile, lines, 60_000)
    cleanup(async () => {
      if (gw.exited()) return
      gw.child.kill('SIGTERM')
      const t = setTimeout(() => gw.child.kill('SIGKILL'), 10_000)
      await until(() => gw.exited(), 15_000).finally(() => clearTimeout(t))
    })
    const view = async (): Promise<ForwardView> => (await (await fetch(`${gw.http}/forward`)).json()) as ForwardView
    const rabbit = async (): Promise<TargetView> => (await view()).targets.rabbit!
    await eventually(rabbit, (t) => t.state === 'up', 60_000, 'target connected')

    const script = await buildHelperProcess('event-device')
    const devices: TestProcess[] = []
    const startDevice = (i: number): void => {
      const p = startProcess(script, [path.join(dir, `meter-${i}.db`), gw.url, `meter-${i}`, String(PER_DEVICE), '10', '20'], {})
      cleanup(() => p.kill())
      devices.push(p)
    }
    for (let i = 0; i < EARLY; i++) startDevice(i)
    // Some of the stream reaches RabbitMQ before it goes.
    await eventually(rabbit, (t) => t.forwarded >= 1_000, 90_000, 'first events forwarded')

    let whileDown: TargetView | undefined
    try {
      await stopRabbitApp()
      const down = await eventually(rabbit, (t) => t.state !== 'up', 30_000, 'target seen down')
      // More devices come while RabbitMQ is away; everyone's events wait on the gateway's disk.
      for (let i = EARLY; i < EARLY + LATE; i++) startDevice(i)
      await sleep(3_000)
      whileDown = await eventually(rabbit, (t) => t.backlog.messages >= down.backlog.messages + 500, 60_000, 'backlog grows while RabbitMQ is down')
    } finally {
      await rabbitUp()
    }
    expect(whileDown!.state).not.toBe('up')
    expect(gw.exited()).toBe(false)

    // Every event the devices emitted is acknowledged by the gateway (in its forward queue or
    // already confirmed), then the backlog drains to RabbitMQ.
    for (const d of devices) await d.waitFor('drained', 120_000)
    const end = await eventually(rabbit, (t) => t.state === 'up' && t.backlog.messages === 0 && t.inFlight === 0, 120_000, 'backlog drained')
    expect(gw.exited()).toBe(false)
    expect((await fetch(`${gw.http}/healthz`)).status).toBe(200)
    const v = await view()
    expect(v.dropped).toEqual({})
    expect(end.dropped).toEqual({})
    expect(end.dead).toBe(0)
    expect(end.forwarded).toBeGreaterThanOrEqual(TOTAL)

    // The restart shows in the metrics (failed connects while RabbitMQ was away) and the log.
    const metrics = await (await fetch(`${gw.http}/metrics`)).text()
    const metric = (name: string): number => Number(new RegExp(`^${name}\\{target="rabbit"\\} (\\S+)$`, 'm').exec(metrics)?.[1] ?? NaN)
    expect(metric('outpost_gateway_forward_connect_failures_total')).toBeGreaterThanOrEqual(1)
    expect(metric('outpost_gateway_forward_backlog_messages')).toBe(0)
    expect(metric('outpost_gateway_forward_up')).toBe(1)
    expect(lines.some((l) => l.includes('target reachable again'))).toBe(true)

    // The queue: every event id at least once, every reading of every device.
    const conn = await amqp.connect(RABBIT_URL)
    conn.on('error', () => {})
    cleanup(() => conn.close().catch(() => {}))
    const ch = await conn.createChannel()
    const { messageCount } = await ch.checkQueue(queue)
    const ids = new Map<string, number>()
    const readings = new Set<string>()
    let got = 0
    await ch.prefetch(1_000)
    const done = new Promise<void>((resolve) => {
      void ch.consume(
        queue!,
        (m) => {
          if (m === null) return
          got++
          const id = String(m.properties.messageId)
          ids.set(id, (ids.get(id) ?? 0) + 1)
          const body = JSON.parse(m.content.toString('utf8')) as { device: string; payload: { n: number } }
          readings.add(`${body.device}:${body.payload.n}`)
          if (got === messageCount) resolve()
        },
        { noAck: true },
      )
    })
    if (messageCount > 0) await Promise.race([done, sleep(60_000)])
    expect(got).toBe(messageCount)
    const missing: string[] = []
    for (let i = 0; i < EARLY + LATE; i++) for (let n = 1; n <= PER_DEVICE; n++) if (!readings.has(`meter-${i}:${n}`)) missing.push(`meter-${i}:${n}`)
    expect(missing.slice(0, 20)).toEqual([])
    expect(readings.size).toBe(TOTAL)
    expect(ids.size).toBe(TOTAL)
    console.log(
      `rabbitmq restart: ${messageCount} deliveries of ${ids.size} ids (${messageCount - ids.size} re-sent); backlog ${whileDown!.backlog.messages} while down; ` +
        `retried ${end.retried}, connect failures ${end.connectFailures}`,
    )
  }, 240_000)
})
