// Device commands from cloud callers, end to end: a real gateway (in process, auth off), a device
// runtime on its broker hosting the counter and echo services, and the NATS request/reply and
// RabbitMQ RPC front ends on the real servers (127.0.0.1:4222, 127.0.0.1:5672), called as a cloud
// caller would (nc.request; a publish with direct reply-to). Also the HTTP route's happy path
// and its 503 for an offline device.
import { randomBytes } from 'node:crypto'
import net from 'node:net'
import amqp, { type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib'
import { connect as natsConnect, headers as natsHeaders, type NatsConnection } from '@nats-io/transport-node'
import { pino, type Logger } from 'pino'
import { describe, expect, it } from 'vitest'
import type { CommandFrontEnd } from '../../gateway/commands/command-request.js'
import { startNatsCommands } from '../../gateway/commands/nats-commands.js'
import { createCloudClient } from '../../gateway/cloud/cloud-client.js'
import { startRabbitCommands } from '../../gateway/commands/rabbitmq-commands.js'
import { defaultGatewayConfig } from '../../gateway/config/gateway-config.js'
import { startGateway, type Gateway } from '../../gateway/index.js'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import * as v from 'valibot'
import { createRuntime, defineContract, defineService, ErrorCode, OutpostError, type Runtime } from '../../runtime/index.js'
import { counterService, echoService, type Observed } from '../fixtures/services.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { tcpProxy } from '../helpers/tcp-proxy.js'
import { until } from '../helpers/wait.js'

const NATS_URL = process.env.OUTPOST_NATS_URL ?? 'nats://127.0.0.1:4222'
const AMQP_URL = process.env.OUTPOST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672'
const quiet = pino({ level: 'silent' })
const suffix = (): string => randomBytes(4).toString('hex')

/** A reply as a caller reads it: the JSON body and the Outpost-Error header. */
interface Reply {
  body: { result?: unknown; error?: { code: string; message: string; details?: unknown } }
  errorHeader: string | undefined
}

interface Setup {
  gw: Gateway
  device: string
  observed: Observed
  rt: Runtime
  lines: Record<string, unknown>[]
  log: Logger
  /** Starts (and registers for cleanup) a device runtime with the counter and echo services. */
  startDevice(id: string, observed?: Observed): Promise<Runtime>
}

/** Polls an async check until it holds. @throws after `ms` */
async function eventually(check: () => Promise<boolean>, ms: number): Promise<void> {
  const end = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > end) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 100))
  }
}

const newObserved = (): Observed => ({ executions: 0, slowAborted: 0, events: [] })

describe('cloud callers to device commands', () => {
  const cleanup = cleanupAfterEach()

  const setup = async (opts: { http?: boolean; maxPending?: number } = {}): Promise<Setup> => {
    const lines: Record<string, unknown>[] = []
    const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) })
    const config = defaultGatewayConfig()
    if (opts.maxPending !== undefined) config.commands.maxPending = opts.maxPending
    if (opts.http === true) {
      config.http.enabled = true
      config.http.port = 0
    }
    const gw = await startGateway({ config, port: 0, logger: quiet })
    cleanup(() => gw.close())
    const startDevice = async (id: string, observed = newObserved()): Promise<Runtime> => {
      const rt = createRuntime({ bridge: createMqttBridge({ url: gw.broker.url, deviceId: id, logger: quiet }), services: [counterService(observed), echoService()], logger: quiet })
      cleanup(() => rt.stop({ drainMs: 100 }))
      await rt.start({ waitForBroker: true })
      await until(() => gw.registry.get(id)?.online === true, 30_000)
      return rt
    }
    const device = `dev-${suffix()}`
    const observed = newObserved()
    const rt = await startDevice(device, observed)
    return { gw, device, observed, rt, lines, log, startDevice }
  }

  /** Stops a device and waits until the gateway has it offline. */
  const stopDevice = async (s: Setup, rt: Runtime, id: string): Promise<void> => {
    await rt.stop({ drainMs: 100 })
    await until(() => s.gw.registry.get(id)?.online === false, 30_000)
  }

  describe('NATS request/reply', () => {
    const start = async (s: Setup, allow = ['#']): Promise<{ fe: CommandFrontEnd; subject: string; nc: NatsConnection; call: (target: string, body?: string | Uint8Array, h?: Record<string, string>) => Promise<Reply> }> => {
      const subject = `outpost-test.cmd.${suffix()}`
      const fe = await startNatsCommands({ config: { servers: [NATS_URL], subject, queueGroup: `q-${suffix()}`, allow, replyPrefixes: ['_INBOX'] }, router: s.gw.commands, log: s.log })
      cleanup(() => fe.close())
      const nc = await natsConnect({ servers: NATS_URL })
      cleanup(() => nc.close())
      const call = async (target: string, body: string | Uint8Array = '', h: Record<string, string> = {}): Promise<Reply> => {
        const hs = natsHeaders()
        for (const [k, v] of Object.entries(h)) hs.set(k, v)
        const m = await nc.request(`${subject}.${target}`, body, { timeout: 60_000, headers: hs })
        return { body: JSON.parse(m.string()) as Reply['body'], errorHeader: m.headers?.has('Outpost-Error') === true ? m.headers.get('Outpost-Error') : undefined }
      }
      return { fe, subject, nc, call }
    }

    it('calls a named device or any live one; unknown device, unknown command, schema failure and a forbidden command are typed errors', async () => {
      const s = await setup()
      const { fe, call } = await start(s)
      const named = await call(`${s.device}.echo.1.say`, JSON.stringify({ text: 'hi' }))
      expect(named).toEqual({ body: { result: { text: 'hi', device: s.device } }, errorHeader: undefined })
      expect((await call('_.counter.1.add', JSON.stringify({ deviceId: 'x', reading: 1, ts: 2 }))).body).toEqual({ result: { ok: true, n: 1 } })
      expect(s.observed.executions).toBe(1)

      const unknown = await call('nobody.echo.1.say', JSON.stringify({ text: 'hi' }))
      expect(unknown.body.error).toMatchObject({ code: 'DEVICE_UNKNOWN', details: { device: 'nobody' } })
      expect(unknown.errorHeader).toBe('DEVICE_UNKNOWN')
      const noCommand = await call(`${s.device}.counter.1.nope`)
      expect([noCommand.body.error?.code, noCommand.errorHeader]).toEqual(['NO_HANDLER', 'NO_HANDLER'])
      // A version of two tokens is still one version: nobody announces echo@1.0.
      expect((await call(`${s.device}.echo.1.0.say`, '{"text":"x"}')).body.error).toMatchObject({ code: 'NO_HANDLER', details: { version: '1.0' } })
      // The router lets it through; the device's own schema refuses it.
      const invalid = await call(`${s.device}.counter.1.add`, JSON.stringify({ deviceId: 7 }))
      expect([invalid.body.error?.code, invalid.errorHeader]).toEqual(['VALIDATION_FAILED', 'VALIDATION_FAILED'])
      expect(s.observed.executions).toBe(1)

      const narrow = await start(s, ['+/echo/1/+'])
      const denied = await narrow.call(`${s.device}.counter.1.add`, JSON.stringify({ deviceId: 'x', reading: 1, ts: 2 }))
      expect([denied.body.error?.code, denied.errorHeader]).toEqual(['NOT_AUTHORIZED', 'NOT_AUTHORIZED'])
      expect((await narrow.call(`${s.device}.echo.1.say`, '{"text":"ok"}')).body.result).toEqual({ text: 'ok', device: s.device })
      expect(s.observed.executions).toBe(1)
      expect(fe.stats()).toEqual({ handled: 2, failed: { DEVICE_UNKNOWN: 1, NO_HANDLER: 2, VALIDATION_FAILED: 1 } })
    }, 60_000)

    it('logs its server URLs without the password in them', async () => {
      const s = await setup()
      const server = NATS_URL.replace('nats://', 'nats://cmd:in-url-secret-9@')
      const fe = await startNatsCommands({ config: { servers: [server], subject: `outpost-test.cmd.${suffix()}`, queueGroup: `q-${suffix()}`, allow: ['#'], replyPrefixes: ['_INBOX'] }, router: s.gw.commands, log: s.log })
      cleanup(() => fe.close())
      await until(() => s.lines.some((l) => l.msg === 'NATS commands ready'), 10_000)
      const text = JSON.stringify(s.lines)
      expect(text).not.toContain('in-url-secret-9')
      expect(text).toContain('nats://cmd:***@')
    }, 60_000)

    it('sends no reply outside the inbox prefixes (the gateway would publish it with its own rights: a JetStream API subject, a stream): such a request is dropped and counted', async () => {
      const s = await setup()
      const { fe, call, nc, subject } = await start(s)
      const heard: string[] = []
      const spy = nc.subscribe(`outpost-test.evil.${suffix()}.>`, { callback: (_e, m) => void heard.push(m.subject) })
      const evil = spy.getSubject().replace('>', 'reply')
      nc.publish(`${subject}.${s.device}.echo.1.say`, JSON.stringify({ text: 'hi' }), { reply: evil })
      nc.publish(`${subject}.${s.device}.echo.1.say`, JSON.stringify({ text: 'hi' }), { reply: '_INBOXX.nope' })
      await until(() => fe.stats().failed.REPLY_REFUSED === 2, 10_000)
      // A request with an inbox reply subject after them is answered; the refused ones ran nothing.
      expect((await call(`${s.device}.echo.1.say`, '{"text":"ok"}')).body.result).toEqual({ text: 'ok', device: s.device })
      await nc.flush()
      expect(heard).toEqual([])
      expect(s.observed.executions).toBe(0)
    }, 60_000)

    it('garbage (bad JSON, not UTF-8, deep nesting, bad headers, short subject) is BAD_ARGUMENT; a request without a reply subject is counted and dropped', async () => {
      const s = await setup()
      const { fe, call, nc, subject } = await start(s)
      const bad = async (target: string, body: string | Uint8Array, h?: Record<string, string>): Promise<string> => {
        const r = await call(target, body, h)
        expect(r.errorHeader).toBe('BAD_ARGUMENT')
        expect(r.body.error?.code).toBe('BAD_ARGUMENT')
        return r.body.error!.message
      }
      expect(await bad(`${s.device}.echo.1.say`, '{not json')).toContain('not JSON')
      expect(await bad(`${s.device}.echo.1.say`, new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]))).toContain('UTF-8')
      await bad(`${s.device}.echo.1.say`, '['.repeat(200_000))
      expect(await bad(`${s.device}.echo.1.say`, '{"text":"x"}', { 'Outpost-Timeout-Ms': 'soon' })).toContain('Outpost-Timeout-Ms')
      expect(await bad(`${s.device}.echo.1.say`, '{"text":"x"}', { 'Outpost-Timeout-Ms': '0' })).toContain('timeout')
      expect(await bad(`${s.device}.echo.1.say`, '{"text":"x"}', { 'outpost-offline': 'maybe' })).toContain('fail or hold')
      expect(await bad(`${s.device}.say`, '{}')).toContain('<device>.<service>.<version>.<command>')
      // Names that are no topic level are refused before anything reaches the broker.
      expect(await bad(`${s.device}.echo+.1.say`, '{}')).toContain('service')

      nc.publish(`${subject}.${s.device}.echo.1.say`, '{"text":"nobody listens"}')
      await until(() => fe.stats().failed.NO_REPLY === 1, 10_000)
      // Still answering, with a bad traceparent simply dropped.
      expect((await call(`${s.device}.echo.1.say`, '{"text":"after"}', { traceparent: 'nonsense', 'Outpost-Timeout-Ms': '20000' })).body.result).toEqual({ text: 'after', device: s.device })
      expect(fe.stats()).toEqual({ handled: 1, failed: { BAD_ARGUMENT: 8, NO_REPLY: 1 } })
    }, 60_000)

    it('a stopped device is DEVICE_OFFLINE; with offline hold the call waits and is answered when the device is back', async () => {
      const s = await setup()
      const { call } = await start(s)
      await stopDevice(s, s.rt, s.device)
      const off = await call(`${s.device}.echo.1.say`, '{"text":"x"}')
      expect([off.body.error?.code, off.errorHeader]).toEqual(['DEVICE_OFFLINE', 'DEVICE_OFFLINE'])
      expect((await call('_.echo.1.say', '{"text":"x"}')).body.error?.code).toBe('DEVICE_OFFLINE')

      const held = call(`${s.device}.echo.1.say`, '{"text":"held"}', { 'Outpost-Offline': 'hold', 'Outpost-Timeout-Ms': '60000' })
      // Sent after it on the same connection: once this one is answered offline, the held call is waiting.
      expect((await call(`${s.device}.echo.1.say`, '{"text":"x"}')).body.error?.code).toBe('DEVICE_OFFLINE')
      await s.startDevice(s.device)
      expect((await held).body).toEqual({ result: { text: 'held', device: s.device } })
    }, 90_000)

    it('holds at most commands.maxPending calls at once (held ones count): a further one is GATEWAY_BUSY at once; then room again', async () => {
      const s = await setup({ maxPending: 3 })
      const { call } = await start(s)
      await stopDevice(s, s.rt, s.device)
      const hold = { 'Outpost-Offline': 'hold', 'Outpost-Timeout-Ms': '60000' }
      const held = [1, 2, 3].map((n) => call(`${s.device}.echo.1.say`, JSON.stringify({ text: `held ${n}` }), hold))
      // Sent after them on the same connection: the three are held when it comes.
      const busy = await call(`${s.device}.echo.1.say`, '{"text":"one more"}', hold)
      expect([busy.body.error?.code, busy.errorHeader]).toEqual(['GATEWAY_BUSY', 'GATEWAY_BUSY'])
      await s.startDevice(s.device)
      expect((await Promise.all(held)).map((r) => r.body.result)).toEqual([1, 2, 3].map((n) => ({ text: `held ${n}`, device: s.device })))
      expect((await call(`${s.device}.echo.1.say`, '{"text":"after"}')).body.result).toEqual({ text: 'after', device: s.device })
    }, 90_000)

    it('64 calls run on the device side by side and are all answered', async () => {
      const s = await setup()
      const { fe, call } = await start(s)
      const N = 64
      let answered = 0
      const calls = Array.from({ length: N }, () => call(`${s.device}.counter.1.slow`, JSON.stringify({ ms: 5_000 }), { 'Outpost-Timeout-Ms': '60000' }).finally(() => answered++))
      // All are running before any is answered: the front end does not wait for one to take the next.
      await until(() => (s.observed.slowRuns ?? 0) === N, 30_000)
      expect(answered).toBe(0)
      const replies = await Promise.all(calls)
      expect(replies.every((r) => (r.body.result as { aborted: boolean }).aborted === false)).toBe(true)
      expect(fe.stats()).toEqual({ handled: N, failed: {} })
    }, 90_000)

    it('an unreachable server at start: the front end starts, says which servers, connects when the server is there, and reconnects after a cut', async () => {
      const s = await setup()
      const proxy = await tcpProxy(NATS_URL)
      cleanup(() => proxy.close())
      await proxy.down()
      const server = proxy.url.replace('mqtt:', 'nats:')
      const subject = `outpost-test.cmd.${suffix()}`
      const fe = await startNatsCommands({ config: { servers: [server], subject, queueGroup: `q-${suffix()}`, allow: ['#'], replyPrefixes: ['_INBOX'] }, router: s.gw.commands, log: s.log })
      cleanup(() => fe.close())
      expect(s.lines.find((l) => typeof l.msg === 'string' && l.msg.includes('TARGET_UNAVAILABLE'))).toMatchObject({ level: 40, servers: server })
      const nc = await natsConnect({ servers: NATS_URL })
      cleanup(() => nc.close())
      /** True once a call is answered with its result (no responders while the front end is away). */
      const answers = async (): Promise<boolean> => {
        const m = await nc.request(`${subject}.${s.device}.echo.1.say`, '{"text":"back"}', { timeout: 5_000 }).catch(() => undefined)
        return m !== undefined && JSON.stringify(m.json()) === JSON.stringify({ result: { text: 'back', device: s.device } })
      }
      expect(await answers()).toBe(false)
      await proxy.up()
      await eventually(answers, 60_000)
      proxy.cut()
      await eventually(answers, 60_000)
      expect(s.lines.some((l) => l.msg === 'NATS command link lost; reconnecting')).toBe(true)
      expect(fe.stats().handled).toBeGreaterThanOrEqual(2)
    }, 150_000)

    it('counts a request\'s deadline from its Outpost-Sent-At header: one held up on the way is TIMEOUT and runs nothing; a bad one is BAD_ARGUMENT', async () => {
      // Requests held in a stalled link ran when it came back, after their callers had given up.
      const s = await setup()
      const { call, nc, subject } = await start(s)
      const body = JSON.stringify({ deviceId: 'x', reading: 1, ts: 2 })
      const late = await call(`${s.device}.counter.1.add`, body, { 'Outpost-Timeout-Ms': '3000', 'Outpost-Sent-At': String(Date.now() - 20_000) })
      expect([late.body.error?.code, late.errorHeader]).toEqual(['TIMEOUT', 'TIMEOUT'])
      expect((await call(`${s.device}.counter.1.add`, body, { 'Outpost-Sent-At': 'yesterday' })).body.error?.code).toBe('BAD_ARGUMENT')
      expect((await call(`${s.device}.counter.1.add`, body, { 'Outpost-Sent-At': String(Date.now()) })).body).toEqual({ result: { ok: true, n: 1 } })
      expect(s.observed.executions).toBe(1)
      // outpost/cloud sends it with every call (a plain subscriber beside the gateway's queue group sees the request).
      const seen: string[] = []
      nc.subscribe(`${subject}.>`, { callback: (_e, m) => void seen.push(m.headers?.get('Outpost-Sent-At') ?? '') })
      await nc.flush()
      const client = createCloudClient({ nats: nc, subject })
      expect(await client.invoke({ service: 'counter', version: '1', command: 'add' }, { deviceId: 'x', reading: 1, ts: 2 }, { device: s.device })).toEqual({ ok: true, n: 2 })
      expect(seen).toHaveLength(1)
      expect(Math.abs(Number(seen[0]) - Date.now())).toBeLessThan(60_000)
    }, 60_000)

    it('a stalled link (nothing comes back, the socket stays open) is found within 30 s, and a close on a stalled link ends within seconds', async () => {
      const s = await setup()
      const proxy = await tcpProxy(NATS_URL)
      cleanup(() => proxy.close())
      const subject = `outpost-test.cmd.${suffix()}`
      const start = () => startNatsCommands({ config: { servers: [proxy.url.replace('mqtt:', 'nats:')], subject, queueGroup: `q-${suffix()}`, allow: ['#'], replyPrefixes: ['_INBOX'] }, router: s.gw.commands, log: s.log })
      // nats.js's default pings (2 minutes, 2 out) took 6 minutes to see it.
      const fe = await start()
      cleanup(() => fe.close())
      proxy.stall()
      await eventually(async () => s.lines.some((l) => l.msg === 'NATS command link lost; reconnecting'), 45_000)
      await fe.close()
      proxy.flow()
      // Its drain never ended: a SIGTERM waited for the link for 6 minutes.
      const second = await start()
      proxy.stall()
      const t0 = performance.now()
      await second.close()
      expect(performance.now() - t0).toBeLessThan(10_000)
    }, 90_000)
  })

  describe('RabbitMQ RPC', () => {
    /** The front end each `start` made, by queue. */
    const startedDirect = new Map<string, CommandFrontEnd>()
    interface Caller {
      fe: CommandFrontEnd
      queue: string
      ch: Channel
      /** Publishes a request (a body as is, or JSON of an object) and waits for its reply. */
      call(body: unknown, props?: { replyTo?: string | null; headers?: Record<string, string>; timestamp?: number }): Promise<Reply>
    }

    /** `url`: the front end's broker (the caller's is always AMQP_URL). */
    const start = async (s: Setup, allow = ['#'], url = AMQP_URL): Promise<Caller> => {
      const queue = `outpost-test.commands.${suffix()}`
      const fe = await startRabbitCommands({ config: { url, queue, prefetch: 64, allow, replyToPrefixes: ['amq.rabbitmq.reply-to', 'amq.gen-'] }, router: s.gw.commands, log: s.log })
      cleanup(() => fe.close())
      startedDirect.set(queue, fe)
      const model: ChannelModel = await amqp.connect(AMQP_URL)
      cleanup(() => model.close().catch(() => {}))
      const ch = await model.createChannel()
      cleanup(() => ch.deleteQueue(queue).catch(() => {}))
      const waiting = new Map<string, (r: Reply) => void>()
      await ch.consume(
        'amq.rabbitmq.reply-to',
        (m: ConsumeMessage | null) => {
          if (m === null) return
          expect(m.properties.contentType).toBe('application/json')
          const header = m.properties.headers?.['Outpost-Error'] as unknown
          waiting.get(String(m.properties.correlationId))?.({ body: JSON.parse(m.content.toString()) as Reply['body'], errorHeader: typeof header === 'string' ? header : header === undefined ? undefined : String(header) })
        },
        { noAck: true },
      )
      const call: Caller['call'] = (body, props = {}) =>
        new Promise((resolve) => {
          const correlationId = suffix()
          waiting.set(correlationId, resolve)
          const content = typeof body === 'string' || body instanceof Uint8Array ? Buffer.from(body) : Buffer.from(JSON.stringify(body))
          ch.sendToQueue(queue, content, { correlationId, ...(props.replyTo === null ? {} : { replyTo: props.replyTo ?? 'amq.rabbitmq.reply-to' }), ...(props.headers ? { headers: props.headers } : {}), ...(props.timestamp === undefined ? {} : { timestamp: props.timestamp }) })
        })
      return { fe, queue, ch, call }
    }

    it('calls a named device or any live one; unknown device, unknown command, schema failure and a forbidden command are typed errors', async () => {
      const s = await setup()
      const { fe, call } = await start(s)
      expect(await call({ device: s.device, service: 'echo', version: '1', command: 'say', payload: { text: 'hi' } })).toEqual({ body: { result: { text: 'hi', device: s.device } }, errorHeader: undefined })
      expect((await call({ service: 'counter', version: '1', command: 'add', payload: { deviceId: 'x', reading: 1, ts: 2 } })).body).toEqual({ result: { ok: true, n: 1 } })
      expect((await call({ device: '_', service: 'echo', version: '1', command: 'say', payload: { text: 'any' } })).body.result).toEqual({ text: 'any', device: s.device })

      const unknown = await call({ device: 'nobody', service: 'echo', version: '1', command: 'say', payload: { text: 'hi' } })
      expect([unknown.body.error?.code, unknown.errorHeader]).toEqual(['DEVICE_UNKNOWN', 'DEVICE_UNKNOWN'])
      expect((await call({ device: s.device, service: 'counter', version: '1', command: 'nope' })).errorHeader).toBe('NO_HANDLER')
      const invalid = await call({ device: s.device, service: 'counter', version: '1', command: 'add', payload: { deviceId: 7 } })
      expect([invalid.body.error?.code, invalid.errorHeader]).toEqual(['VALIDATION_FAILED', 'VALIDATION_FAILED'])

      const narrow = await start(s, ['+/echo/1/+'])
      const denied = await narrow.call({ device: s.device, service: 'counter', version: '1', command: 'add', payload: { deviceId: 'x', reading: 1, ts: 2 } })
      expect([denied.body.error?.code, denied.errorHeader]).toEqual(['NOT_AUTHORIZED', 'NOT_AUTHORIZED'])
      expect(s.observed.executions).toBe(1)
      expect(fe.stats()).toEqual({ handled: 3, failed: { DEVICE_UNKNOWN: 1, NO_HANDLER: 1, VALIDATION_FAILED: 1 } })
    }, 60_000)

    it('counts a request\'s deadline from its AMQP timestamp: one that waited past it in the queue (a gateway down, a crash and a redelivery) is TIMEOUT and runs nothing', async () => {
      const s = await setup()
      const { call } = await start(s)
      const req = { device: s.device, service: 'counter', version: '1', command: 'add', payload: { deviceId: 'x', reading: 1, ts: 2 }, timeoutMs: 5_000 }
      // Sent 20 s ago (milliseconds, as Date.now() gives), with a 5 s timeout.
      const late = await call(req, { timestamp: Date.now() - 20_000 })
      expect([late.body.error?.code, late.errorHeader]).toEqual(['TIMEOUT', 'TIMEOUT'])
      expect(late.body.error?.message).toMatch(/deadline passed before the gateway took it/)
      // Seconds, as the AMQP spec has it: sent a moment ago, within the deadline.
      expect((await call(req, { timestamp: Math.floor(Date.now() / 1000) })).body).toEqual({ result: { ok: true, n: 1 } })
      // A clock ahead of the gateway's is not trusted: the deadline counts from when the gateway took it.
      expect((await call(req, { timestamp: Date.now() + 3_600_000 })).body).toEqual({ result: { ok: true, n: 2 } })
      expect(s.observed.executions).toBe(2)
    }, 60_000)

    it('puts no reply into a queue outside the reply prefixes (the events\' own, say): such a request is acked, dropped and counted', async () => {
      const s = await setup()
      const { fe, call, ch } = await start(s)
      const victim = `outpost-test.victim.${suffix()}`
      await ch.assertQueue(victim, { durable: false, autoDelete: false })
      cleanup(() => ch.deleteQueue(victim).catch(() => {}))
      void call({ device: s.device, service: 'echo', version: '1', command: 'say', payload: { text: 'hi' } }, { replyTo: victim })
      await until(() => fe.stats().failed.REPLY_REFUSED === 1, 10_000)
      expect((await call({ device: s.device, service: 'echo', version: '1', command: 'say', payload: { text: 'ok' } })).body.result).toEqual({ text: 'ok', device: s.device })
      expect((await ch.checkQueue(victim)).messageCount).toBe(0)
      expect(s.observed.executions).toBe(0)
    }, 60_000)

    it('garbage (not JSON, not an object, missing or mistyped fields, unknown keys, a huge body) is BAD_ARGUMENT; no replyTo is acked and counted', async () => {
      const s = await setup()
      const { fe, call, ch, queue } = await start(s)
      const bad = async (body: unknown): Promise<string> => {
        const r = await call(body)
        expect([r.body.error?.code, r.errorHeader]).toEqual(['BAD_ARGUMENT', 'BAD_ARGUMENT'])
        return r.body.error!.message
      }
      const ok = { device: s.device, service: 'echo', version: '1', command: 'say', payload: { text: 'x' } }
      expect(await bad('{garbage')).toContain('not JSON')
      expect(await bad('')).toContain('service is missing')
      expect(await bad('[1,2]')).toContain('JSON object')
      expect(await bad(new Uint8Array([0xff, 0xfe]))).toContain('UTF-8')
      expect(await bad({ ...ok, service: undefined })).toContain('service is missing')
      expect(await bad({ ...ok, command: 5 })).toContain('command is not a string')
      expect(await bad({ ...ok, timeoutMs: '100' })).toContain('timeoutMs')
      expect(await bad({ ...ok, timeoutMs: 1.5 })).toContain('timeout')
      expect(await bad({ ...ok, offline: 'later' })).toContain('fail or hold')
      expect(await bad({ ...ok, paylod: {} })).toContain('paylod')
      expect(await bad({ ...ok, payload: 'x'.repeat(1024 * 1024) })).toContain('larger than')

      // No reply ever comes for it (nothing to wait for).
      void call(ok, { replyTo: null })
      await until(() => fe.stats().failed.NO_REPLY === 1, 10_000)
      // Acked: nothing is left in the queue, and the front end still answers.
      expect((await call(ok, { headers: { traceparent: 'junk' } })).body.result).toEqual({ text: 'x', device: s.device })
      expect((await ch.checkQueue(queue)).messageCount).toBe(0)
      expect(fe.stats()).toEqual({ handled: 1, failed: { BAD_ARGUMENT: 11, NO_REPLY: 1 } })
    }, 60_000)

    it('a stopped device is DEVICE_OFFLINE; with offline hold the call waits and is answered when the device is back', async () => {
      const s = await setup()
      const { call } = await start(s)
      await stopDevice(s, s.rt, s.device)
      const off = await call({ device: s.device, service: 'echo', version: '1', command: 'say', payload: { text: 'x' } })
      expect([off.body.error?.code, off.errorHeader]).toEqual(['DEVICE_OFFLINE', 'DEVICE_OFFLINE'])
      expect((await call({ service: 'echo', version: '1', command: 'say', payload: { text: 'x' } })).body.error?.code).toBe('DEVICE_OFFLINE')
      const held = call({ device: s.device, service: 'echo', version: '1', command: 'say', payload: { text: 'held' }, offline: 'hold', timeoutMs: 60_000 })
      // Delivered after it on the same channel: once this one is answered offline, the held call is waiting.
      expect((await call({ device: s.device, service: 'echo', version: '1', command: 'say', payload: { text: 'x' } })).body.error?.code).toBe('DEVICE_OFFLINE')
      await s.startDevice(s.device)
      expect((await held).body).toEqual({ result: { text: 'held', device: s.device } })
    }, 90_000)

    it('64 calls run on the device side by side and are all answered', async () => {
      const s = await setup()
      const { fe, call } = await start(s)
      const N = 64
      let answered = 0
      const calls = Array.from({ length: N }, () => call({ device: s.device, service: 'counter', version: '1', command: 'slow', payload: { ms: 5_000 }, timeoutMs: 60_000 }).finally(() => answered++))
      await until(() => (s.observed.slowRuns ?? 0) === N, 30_000)
      expect(answered).toBe(0)
      const replies = await Promise.all(calls)
      expect(replies.every((r) => (r.body.result as { aborted: boolean }).aborted === false)).toBe(true)
      expect(fe.stats()).toEqual({ handled: N, failed: {} })
    }, 90_000)

    it('a request held for an offline device while its link is cut again and again runs once when the device is back, and is answered', async () => {
      // Each delivery of it became one more held call, all sent when the device came back: it
      // ran 5 times, and its caller got no reply.
      const s = await setup()
      const proxy = await tcpProxy(AMQP_URL)
      cleanup(() => proxy.close())
      const { call } = await start(s, ['#'], AMQP_URL.replace(/@[^/]+/, `@${new URL(proxy.url).host}`))
      await stopDevice(s, s.rt, s.device)
      const ready = (): number => s.lines.filter((l) => l.msg === 'RabbitMQ commands ready').length
      const held = call({ device: s.device, service: 'counter', version: '1', command: 'add', payload: { deviceId: 'x', reading: 1, ts: 2 }, offline: 'hold', timeoutMs: 60_000 })
      await new Promise((r) => setTimeout(r, 500))
      for (let cut = 1; cut <= 4; cut++) {
        proxy.cut()
        await until(() => ready() === cut + 1, 30_000)
        await new Promise((r) => setTimeout(r, 300))
      }
      await s.startDevice(s.device, s.observed)
      expect((await held).body).toEqual({ result: { ok: true, n: 1 } })
      await new Promise((r) => setTimeout(r, 1_000))
      expect(s.observed.executions).toBe(1)
    }, 120_000)

    it('closes within seconds on a stalled link (the broker answers nothing, the socket stays open)', async () => {
      const s = await setup()
      const proxy = await tcpProxy(AMQP_URL)
      cleanup(() => proxy.close())
      const { fe } = await start(s, ['#'], AMQP_URL.replace(/@[^/]+/, `@${new URL(proxy.url).host}`))
      proxy.stall()
      const t0 = performance.now()
      await fe.close()
      expect(performance.now() - t0).toBeLessThan(10_000)
    }, 60_000)

    it('a device that answers while the front end stops: the answer reaches the caller, and the request is not run again at the next start', async () => {
      const s = await setup()
      const { fe, queue, call } = await start(s)
      const slow = call({ device: s.device, service: 'counter', version: '1', command: 'slow', payload: { ms: 800 } })
      await until(() => (s.observed.slowRuns ?? 0) === 1, 10_000)
      await fe.close()
      expect((await slow).body).toEqual({ result: { aborted: false } })
      // Started again on the same queue: nothing comes back to run.
      const again = await startRabbitCommands({ config: { url: AMQP_URL, queue, prefetch: 64, allow: ['#'], replyToPrefixes: ['amq.rabbitmq.reply-to'] }, router: s.gw.commands, log: s.log })
      cleanup(() => again.close())
      await new Promise((r) => setTimeout(r, 1_500))
      expect(s.observed.slowRuns).toBe(1)
    }, 60_000)

    it('an unreachable broker at start: the front end starts, says where, takes queued requests once the broker is there, and again after a cut', async () => {
      const s = await setup()
      const proxy = await tcpProxy(AMQP_URL.replace(/^amqp:\/\/[^@]*@/, 'amqp://'))
      cleanup(() => proxy.close())
      await proxy.down()
      const port = new URL(proxy.url).port
      const { ch, call, queue } = await start(s)
      // The same queue behind the proxy; the caller declares it, so requests wait in it meanwhile.
      const fe = await startRabbitCommands({ config: { url: `amqp://guest:guest@127.0.0.1:${port}`, queue, prefetch: 8, allow: ['#'], replyToPrefixes: ['amq.rabbitmq.reply-to', 'amq.gen-'] }, router: s.gw.commands, log: s.log })
      cleanup(() => fe.close())
      expect(s.lines.find((l) => typeof l.msg === 'string' && l.msg.includes('TARGET_UNAVAILABLE'))).toMatchObject({ level: 40, server: `127.0.0.1:${port}` })
      // Only the proxied front end from now on: the direct one stops consuming.
      await startedDirect.get(queue)!.close()
      expect((await ch.checkQueue(queue)).consumerCount).toBe(0)
      const say = { device: s.device, service: 'echo', version: '1', command: 'say', payload: { text: 'queued' } }
      const first = call(say)
      await proxy.up()
      expect((await first).body.result).toEqual({ text: 'queued', device: s.device })
      proxy.cut()
      await until(() => s.lines.some((l) => l.msg === 'RabbitMQ command link lost; reconnecting'), 30_000)
      expect((await call(say)).body.result).toEqual({ text: 'queued', device: s.device })
      // The first request's ack may have been on the wire when the link was cut: then the broker
      // delivered it again and it was answered twice (the caller ignores the second reply).
      expect(fe.stats().handled).toBeGreaterThanOrEqual(2)
      expect(fe.stats().failed).toEqual({})
    }, 150_000)
  })

  it('two cloud links that take the connection and never answer keep "ready" waiting for one connect timeout, not two in turn', async () => {
    // Each front end waits up to 10 s for its first connection; one after the other, 20 s.
    const held = new Set<net.Socket>()
    const silent = net.createServer((socket) => void held.add(socket.on('error', () => undefined)))
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()))
    cleanup(() => new Promise<void>((r) => (held.forEach((h) => h.destroy()), silent.close(() => r()))))
    const port = (silent.address() as net.AddressInfo).port
    const config = defaultGatewayConfig()
    config.commands.nats = { servers: [`nats://127.0.0.1:${port}`], subject: 'outpost-test.cmd', queueGroup: `q-${suffix()}`, allow: ['#'], replyPrefixes: ['_INBOX'] }
    config.commands.rabbitmq = { url: `amqp://guest:guest@127.0.0.1:${port}`, queue: `outpost-test.silent.${suffix()}`, prefetch: 8, allow: ['#'], replyToPrefixes: ['amq.rabbitmq.reply-to'] }
    const t0 = performance.now()
    const gw = await startGateway({ config, port: 0, logger: quiet })
    const took = performance.now() - t0
    await gw.close()
    expect(took).toBeLessThan(16_000)
  }, 60_000)

  it('HTTP: a held call whose client has gone gives its place back (commands.maxPending), instead of holding it to its deadline', async () => {
    const s = await setup({ http: true, maxPending: 1 })
    await stopDevice(s, s.rt, s.device)
    const url = `${s.gw.http!.url}/devices/${s.device}/commands/echo/1/say`
    const gave = new AbortController()
    const held = fetch(`${url}?offline=hold&timeoutMs=60000`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"text":"wait"}', signal: gave.signal }).catch((e: unknown) => e)
    const second = async (): Promise<{ status: number; code?: string }> => {
      const res = await fetch(`${url}?offline=fail`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"text":"now"}' })
      return { status: res.status, code: ((await res.json()) as Reply['body']).error?.code }
    }
    // The one place is taken by the held call.
    await eventually(async () => (await second()).code === 'GATEWAY_BUSY', 10_000)
    gave.abort()
    await held
    await eventually(async () => (await second()).code === 'DEVICE_OFFLINE', 5_000)
  }, 60_000)

  it('HTTP: a device cannot answer with a code only the gateway gives; a result that breaks the contract or cannot be carried is a 502', async () => {
    const s = await setup({ http: true })
    const odd = defineContract({
      name: 'odd',
      version: '1',
      commands: {
        forge: { payload: v.object({ code: v.string() }), result: v.object({}) },
        lie: { payload: v.object({}), result: v.object({ n: v.number() }) },
        huge: { payload: v.object({}), result: v.object({ s: v.string() }) },
      },
    })
    const svc = defineService(odd, {
      commands: {
        forge: ({ code }) => {
          throw new OutpostError(code as ErrorCode, 'forged by the device')
        },
        lie: () => ({ n: 'not a number' }) as never,
        huge: () => ({ s: 'x'.repeat(400_000) }),
      },
    })
    const rt = createRuntime({ bridge: createMqttBridge({ url: s.gw.broker.url, deviceId: 'odd-1', logger: quiet }), services: [svc], logger: quiet })
    cleanup(() => rt.stop({ drainMs: 100 }))
    await rt.start({ waitForBroker: true })
    await until(() => s.gw.registry.get('odd-1')?.online === true, 30_000)
    const post = async (command: string, body: unknown): Promise<{ status: number; code?: string; details?: unknown }> => {
      const res = await fetch(`${s.gw.http!.url}/devices/odd-1/commands/odd/1/${command}?timeoutMs=5000`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) })
      const doc = (await res.json()) as Reply['body']
      return { status: res.status, code: doc.error?.code, details: doc.error?.details }
    }
    for (const code of ['NOT_AUTHENTICATED', 'GATEWAY_BUSY', 'DEVICE_OFFLINE', 'DEVICE_UNKNOWN']) {
      expect(await post('forge', { code })).toEqual({ status: 502, code: 'INTERNAL', details: { device: 'odd-1', deviceCode: code } })
    }
    // A device may refuse a caller in its own terms.
    expect(await post('forge', { code: 'NOT_AUTHORIZED' })).toMatchObject({ status: 403, code: 'NOT_AUTHORIZED' })
    expect(await post('lie', {})).toMatchObject({ status: 502, code: 'INTERNAL' })
    expect(await post('huge', {})).toMatchObject({ status: 502, code: 'FRAME_TOO_LARGE' })
  }, 60_000)

  it('HTTP: a body with a lone surrogate escape (valid JSON, no text) is BAD_ARGUMENT; a pair goes through as sent', async () => {
    // It was taken and reached the device as U+FFFD: the data changed without a word.
    const s = await setup({ http: true })
    const url = `${s.gw.http!.url}/devices/${s.device}/commands/echo/1/say`
    const post = async (raw: string): Promise<{ status: number; body: Reply['body'] }> => {
      const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: raw })
      return { status: res.status, body: (await res.json()) as Reply['body'] }
    }
    for (const raw of ['{"text":"\\ud800"}', '{"text":"a\\uDC00b"}', '{"text":"x","\\ud83d":1}']) {
      const r = await post(raw)
      expect([r.status, r.body.error?.code], raw).toEqual([400, 'BAD_ARGUMENT'])
    }
    expect(await post('{"text":"\\ud83d\\ude00 \\\\ud800"}')).toEqual({ status: 200, body: { result: { text: '\u{1F600} \\ud800', device: s.device } } })
  }, 60_000)

  it('HTTP: POST /devices/<id>/commands/... answers the result, and 503 DEVICE_OFFLINE once the device is gone', async () => {
    const s = await setup({ http: true })
    const url = `${s.gw.http!.url}/devices/${s.device}/commands/echo/1/say`
    const post = async (): Promise<{ status: number; body: Reply['body'] }> => {
      const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ text: 'web' }) })
      return { status: res.status, body: (await res.json()) as Reply['body'] }
    }
    expect(await post()).toEqual({ status: 200, body: { result: { text: 'web', device: s.device } } })
    await stopDevice(s, s.rt, s.device)
    const off = await post()
    expect(off.status).toBe(503)
    expect(off.body.error).toMatchObject({ code: 'DEVICE_OFFLINE', details: { device: s.device } })
  }, 60_000)
})
