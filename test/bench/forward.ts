// Issue 14's forwarding figures (`npm run bench -- --only forward`): events published over MQTT
// (QoS 1, a window of 256 per device, by Outpost's MQTT transport as a device's outbox sends
// them; procs/event-publisher.ts) through a gateway that
// commits each to forward.db before acknowledging it and forwards it to NATS JetStream
// (Nats-Msg-Id, acked) or a durable RabbitMQ queue (persistent, confirmed); beside a raw client
// publishing the same messages straight to the target with the same guarantees and a window of
// 256 in flight. Also the drain of a backlog built while the target was cut off, counted from
// the pump's connection once the link is back (the wait for it, its reconnect backoff, is its own
// figure, `reconnect_ms`; `empty_after_ms` runs from the link's return to the last confirmation). The devices
// publish from another process (procs/event-publisher.ts); the gateway and the raw clients run
// in this one, each in turn (the servers run beside it).
import type { ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { jetstream, jetstreamManager, StorageType } from '@nats-io/jetstream'
import { connect as natsConnect, type NatsConnection } from '@nats-io/transport-node'
import amqp from 'amqplib'
import { pino } from 'pino'
import { defaultGatewayConfig } from '../../gateway/config/gateway-config.js'
import type { ForwardConfig, TargetConfig } from '../../gateway/forward/forward-config.js'
import { startGateway } from '../../gateway/index.js'
import { createEnvelopeCodec } from '../../runtime/wire/codec.js'
import { firstLine, start, stop } from './cross-process.js'
import type { BenchResult } from './measure.js'

const WINDOW = 256
const PUBLISHERS = 4
const codec = createEnvelopeCodec()
/** The headers the gateway puts on a forwarded event (gateway/forward/router.ts), for the raw clients' copies. */
const HEADERS = { 'Outpost-Device': 'rawdev', 'Outpost-Instance': 'bench', 'Outpost-Service': 'meter', 'Outpost-Version': '1', 'Outpost-Event': 'reading', 'Outpost-At': '1795740000000', 'Content-Type': 'application/cbor' }
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** `n` event frames of device `dev`, ids unique to this run. */
function frames(dev: string, n: number, tag: string): Uint8Array[] {
  return Array.from({ length: n }, (_, i) =>
    codec.encode({ v: 1, kind: 'event', id: `${tag}-${dev}-${i}`, src: dev, inst: 'bench', at: Date.now(), service: 'meter', version: '1', name: 'reading', payload: { n: i, value: 21.5, unit: 'C' } }),
  )
}

interface Target {
  config(tag: string, url: string): TargetConfig
  /** Sends `bodies` straight to the target with its confirmations, WINDOW in flight. */
  raw(tag: string, bodies: { id: string; body: Uint8Array }[]): Promise<void>
  cleanup(tag: string): Promise<void>
  direct: string
}

export async function natsTarget(): Promise<Target & { nc: NatsConnection }> {
  // Without ahead-captured stacks, as the gateway's target connects: the raw client at its best.
  const nc = await natsConnect({ servers: '127.0.0.1:4222', noAsyncTraces: true })
  const jsm = await jetstreamManager(nc)
  return {
    nc,
    direct: 'nats://127.0.0.1:4222',
    config: (tag, url) => ({ type: 'nats', servers: [url], encoding: 'cbor', window: WINDOW, confirmTimeoutMs: 10_000, maxBytes: 1 << 30, whenFull: 'refuse', stream: { name: `BENCH_${tag}`, subjects: [`bench${tag}.>`], create: true, duplicateWindowMs: 120_000 }, subject: `bench${tag}.{device}.{event}` }),
    async raw(tag, bodies) {
      await jsm.streams.add({ name: `BENCH_${tag}`, subjects: [`bench${tag}.>`], storage: StorageType.File })
      const js = jetstream(nc)
      const { headers } = await import('@nats-io/nats-core')
      let next = 0
      await Promise.all(Array.from({ length: WINDOW }, async () => {
        while (next < bodies.length) {
          const b = bodies[next++]!
          // The same message as the gateway sends: the envelope's fields as headers.
          const h = headers()
          for (const [k, v] of Object.entries(HEADERS)) h.set(k, v)
          h.set('Outpost-Id', b.id)
          await js.publish(`bench${tag}.raw.reading`, b.body, { msgID: b.id, headers: h })
        }
      }))
    },
    cleanup: (tag) => jsm.streams.delete(`BENCH_${tag}`).then(() => {}, () => {}),
  }
}

export async function rabbitTarget(): Promise<Target> {
  const conn = await amqp.connect('amqp://guest:guest@127.0.0.1:5672')
  const ch = await conn.createChannel()
  return {
    direct: 'amqp://127.0.0.1:5672',
    config: (tag, url) => ({ type: 'rabbitmq', url: url.replace('amqp://', 'amqp://guest:guest@'), encoding: 'cbor', window: WINDOW, confirmTimeoutMs: 10_000, maxBytes: 1 << 30, whenFull: 'refuse', exchange: { name: `bench.${tag}`, type: 'topic', create: true }, queue: { name: `bench.${tag}.q`, bindingKey: '#' }, routingKey: '{device}.{event}' }),
    async raw(tag, bodies) {
      const cc = await conn.createConfirmChannel()
      await cc.assertExchange(`bench.${tag}`, 'topic', { durable: true })
      await cc.assertQueue(`bench.${tag}.q`, { durable: true })
      await cc.bindQueue(`bench.${tag}.q`, `bench.${tag}`, '#')
      let next = 0
      await Promise.all(Array.from({ length: WINDOW }, async () => {
        while (next < bodies.length) {
          const b = bodies[next++]!
          await new Promise<void>((resolve, reject) => {
            cc.publish(`bench.${tag}`, 'raw.reading', Buffer.from(b.body), { persistent: true, messageId: b.id, contentType: 'application/cbor', headers: { ...HEADERS, 'Outpost-Id': b.id }, timestamp: Math.floor(Date.now() / 1000), appId: 'outpost-gateway' }, (err) => (err ? reject(err) : resolve()))
          })
        }
      }))
      await cc.close()
    },
    async cleanup(tag) {
      await ch.deleteExchange(`bench.${tag}`).catch(() => {})
      await ch.deleteQueue(`bench.${tag}.q`).catch(() => {})
    },
  }
}

/** What one run measured: events/s, and CPU µs per event of the measured process (and of the devices' process). */
export interface Run {
  rate: number
  cpuUs: number
  devicesCpuUs?: number
  /**
   * Backlog only: from the link's return to the pump's next connection (its reconnect backoff,
   * 0.5 s doubling to 30 s, with jitter, was still running), and from the link's return until
   * the target confirmed the last event. `rate` counts from the pump's connection.
   */
  reconnectMs?: number
  emptyAfterMs?: number
}

const cpuSince = (c0: NodeJS.CpuUsage, n: number): number => {
  const c = process.cpuUsage(c0)
  return Math.round(((c.user + c.system) / n) * 10) / 10
}

/**
 * Events/s through the gateway (live, or draining a backlog built with the target cut off), and
 * the CPU per event of the gateway's process (this one) while it ran.
 */
/** `client`: what the devices publish with (procs/event-publisher.ts): Outpost's MQTT transport, as devices do, or MQTT.js. */
export async function throughGateway(t: Target, name: string, events: number, mode: 'live' | 'backlog', client: 'outpost' | 'mqtt.js' = 'outpost'): Promise<Run> {
  const tag = randomBytes(4).toString('hex')
  const dir = mkdtempSync(path.join(tmpdir(), 'outpost-bench-fwd-'))
  // Live, the gateway connects to the target directly, as the raw client does. The backlog run
  // cuts the link with a proxy in a process of its own (procs/link-proxy.ts): in this process,
  // the gateway's, it read and wrote every forwarded byte on the gateway's thread.
  const proxy = mode === 'backlog' ? start('link-proxy.ts', [t.direct.replace(/^\w+:/, 'mqtt:')]) : undefined
  try {
    const url = proxy === undefined ? t.direct : `${t.direct.split(':')[0]}://127.0.0.1:${await firstLine(proxy, 'link proxy')}`
    const forward: ForwardConfig = { targets: { [name]: t.config(tag, url) }, routes: [{ events: ['#'], devices: ['*'], to: [name] }] }
    const gw = await startGateway({ config: { ...defaultGatewayConfig(), dataDir: dir, persistence: 'sqlite', forward }, port: 0, logger: pino({ level: 'silent' }) })
    try {
      await sleep(500)
      const per = Math.ceil(events / PUBLISHERS)
      const total = per * PUBLISHERS
      // The devices: another process, as devices are (their MQTT client's work is not the gateway's).
      const devices = Array.from({ length: PUBLISHERS }, (_, i) => `bench-${i}`)
      const pub = start('event-publisher.ts', [JSON.stringify({ url: gw.broker.url, devices, per, tag, window: WINDOW, client })])
      const exited = new Promise<number | null>((r) => pub.once('exit', (code) => r(code)))
      try {
        await firstLine(pub, 'event publisher')
        let out = ''
        pub.stdout!.on('data', (d: Buffer) => void (out += d.toString()))
        const devicesCpu = async (): Promise<number | undefined> => {
          if ((await exited) !== 0) throw new Error('event publisher failed')
          const us = Number(/done (\d+)/.exec(out)?.[1])
          return Number.isFinite(us) ? Math.round((us / total) * 10) / 10 : undefined
        }
        const done = (): boolean => (gw.forwarder!.stats().targets[name]?.forwarded ?? 0) >= total
        if (proxy !== undefined) {
          await said(proxy, 'down', () => proxy.kill('SIGHUP'))
          pub.kill('SIGUSR2')
          await devicesCpu()
          const c0 = process.cpuUsage()
          await said(proxy, 'up', () => proxy.kill('SIGUSR2'))
          const t0 = performance.now()
          // The pump connects again at its next attempt (backoff): the drain counts from there,
          // as the raw client's from its first publish on a connection it already has.
          while (gw.forwarder!.stats().targets[name]?.state !== 'up') await sleep(1)
          const t1 = performance.now()
          while (!done()) await sleep(5)
          const t2 = performance.now()
          return { rate: Math.round(total / ((t2 - t1) / 1000)), cpuUs: cpuSince(c0, total), reconnectMs: Math.round(t1 - t0), emptyAfterMs: Math.round(t2 - t0) }
        }
        const t0 = performance.now()
        const c0 = process.cpuUsage()
        pub.kill('SIGUSR2')
        while (!done()) await sleep(5)
        const rate = Math.round(total / ((performance.now() - t0) / 1000))
        const cpuUs = cpuSince(c0, total)
        const d = await devicesCpu()
        return { rate, cpuUs, ...(d === undefined ? {} : { devicesCpuUs: d }) }
      } finally {
        await stop(pub)
      }
    } finally {
      await gw.close()
    }
  } finally {
    if (proxy !== undefined) await stop(proxy)
    await t.cleanup(tag)
    rmSync(dir, { recursive: true, force: true })
  }
}

/** Does `act` and waits until `child` prints the line `word`. */
function said(child: ChildProcess, word: string, act: () => void): Promise<void> {
  return new Promise((resolve, reject) => {
    let buf = ''
    const gone = (code: number | null): void => reject(new Error(`${word}: the process exited (${code}) before saying so`))
    const on = (d: Buffer): void => {
      buf += d.toString()
      if (!buf.split('\n').includes(word)) return
      child.stdout!.off('data', on)
      child.off('exit', gone)
      resolve()
    }
    child.stdout!.on('data', on)
    child.once('exit', gone)
    act()
  })
}

/** Events/s of the raw client, and its process's CPU per event. */
export async function raw(t: Target, events: number): Promise<Run> {
  const tag = randomBytes(4).toString('hex')
  const bodies = frames('rawdev', events, tag).map((body, i) => ({ id: `${tag}raw${i}`, body }))
  try {
    const t0 = performance.now()
    const c0 = process.cpuUsage()
    await t.raw(tag, bodies)
    return { rate: Math.round(events / ((performance.now() - t0) / 1000)), cpuUs: cpuSince(c0, events) }
  } finally {
    await t.cleanup(tag)
  }
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

/** The forwarding rows: for each target, raw and gateway live, raw and gateway draining a backlog. */
export async function benchForward(o: { events: number; backlog: number; rounds: number }): Promise<BenchResult[]> {
  const out: BenchResult[] = []
  const nats = await natsTarget()
  const rabbit = await rabbitTarget()
  for (const [name, t] of [['jetstream', nats], ['rabbitmq', rabbit]] as const) {
    for (const [workload, n, mode] of [[`forward-${name}`, o.events, 'live'], [`forward-${name}-backlog-drain`, o.backlog, 'backlog']] as const) {
      const ours: Run[] = []
      const theirs: Run[] = []
      for (let r = 0; r < o.rounds; r++) {
        theirs.push(await raw(t, n))
        ours.push(await throughGateway(t, name, n, mode))
      }
      const rawName = `raw-${name}-window${WINDOW}`
      const rates = (rs: Run[]): number[] => rs.map((x) => x.rate)
      const devices = ours.flatMap((x) => (x.devicesCpuUs === undefined ? [] : [x.devicesCpuUs]))
      const waits = mode === 'backlog' ? { reconnect_ms: median(ours.map((x) => x.reconnectMs ?? 0)), empty_after_ms: median(ours.map((x) => x.emptyAfterMs ?? 0)) } : {}
      out.push({ system: rawName, workload, concurrency: WINDOW, ops_per_s: median(rates(theirs)), p50_us: null, p99_us: null, cpu_us_per_op: median(theirs.map((x) => x.cpuUs)), extra: { events: n } })
      out.push({
        system: 'outpost-gateway', workload, concurrency: WINDOW, ops_per_s: median(rates(ours)), p50_us: null, p99_us: null,
        // The gateway's process (during the drain only, for a backlog); the devices' process beside it, live.
        cpu_us_per_op: median(ours.map((x) => x.cpuUs)),
        extra: { events: n, rounds: ours.map((x, i) => (x.rate / theirs[i]!.rate).toFixed(2)).join('/'), ...(devices.length === 0 ? {} : { devices_cpu_us_per_event: median(devices) }), ...waits },
      })
    }
  }
  await nats.nc.close()
  return out
}
