// The forwarder through its public face (accept → forward.db → pump → JetStream), against the
// real NATS server: live events go out from memory in order, rows another process writes (the
// CLI's redrive) are picked up while live traffic flows and when it is idle, and a reconnect
// sends what waited.
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { DiscardPolicy, jetstreamManager } from '@nats-io/jetstream'
import { connect } from '@nats-io/transport-node'
import Database from 'better-sqlite3'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { FORWARD_DEFAULTS, type ForwardConfig } from '../../gateway/forward/forward-config.js'
import { openForwardQueue } from '../../gateway/forward/forward-queue.js'
import { createForwarder, type Forwarder } from '../../gateway/forward/forwarder.js'
import { createEnvelopeCodec } from '../../runtime/wire/codec.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { tcpProxy } from '../helpers/tcp-proxy.js'
import { until } from '../helpers/wait.js'

const NATS = 'nats://127.0.0.1:4222'
const cleanup = cleanupAfterEach()
const codec = createEnvelopeCodec()

function setup(servers = [NATS]): { config: ForwardConfig; dir: string; stream: string; start(): Forwarder } {
  const r = randomBytes(5).toString('hex')
  const stream = `F_${r}`
  const dir = mkdtempSync(path.join(tmpdir(), 'outpost-fwd-'))
  const config: ForwardConfig = {
    targets: {
      cloud: { type: 'nats', servers, encoding: 'cbor', window: 64, confirmTimeoutMs: 5_000, maxBytes: FORWARD_DEFAULTS.maxBytes, whenFull: 'refuse', subject: `f${r}.{device}.{event}`, stream: { name: stream, subjects: [`f${r}.>`], create: true, duplicateWindowMs: 60_000 } },
    },
    routes: [{ events: ['#'], devices: ['*'], to: ['cloud'] }],
  }
  cleanup(async () => {
    const nc = await connect({ servers: NATS })
    await (await jetstreamManager(nc)).streams.delete(stream).catch(() => {})
    await nc.close()
    rmSync(dir, { recursive: true, force: true })
  })
  return {
    config,
    dir,
    stream,
    start() {
      const f = createForwarder({ config, path: path.join(dir, 'forward.db'), log: pino({ level: 'silent' }), backoff: { initialMs: 50, maxMs: 200 } })
      cleanup(() => f.close(500))
      f.start()
      return f
    },
  }
}

const event = (device: string, id: string, n: number): { topic: string; frame: Uint8Array } => ({
  topic: `ob/${device}/evt/meter/1/reading`,
  frame: codec.encode({ v: 1, kind: 'event', id, src: device, inst: 'i1', at: 1_795_740_000_000 + n, service: 'meter', version: '1', name: 'reading', payload: { n } }),
})

/** The envelope id (Outpost-Id) of every message in the stream, in stream order; each Nats-Msg-Id is checked to be `<device>/<id>`. */
async function stored(stream: string): Promise<string[]> {
  const nc = await connect({ servers: NATS })
  try {
    const jsm = await jetstreamManager(nc)
    const n = (await jsm.streams.info(stream)).state.messages
    const ids: string[] = []
    for (let seq = 1; seq <= n; seq++) {
      const h = (await jsm.streams.getMessage(stream, { seq }))!.header
      expect(h.get('Nats-Msg-Id')).toBe(`${h.get('Outpost-Device')}/${h.get('Outpost-Id')}`)
      ids.push(h.get('Outpost-Id'))
    }
    return ids
  } finally {
    await nc.close()
  }
}

const forwarded = (f: Forwarder): number => f.stats().targets.cloud?.forwarded ?? 0

describe('forwarder', () => {
  it('forwards 3,000 live events of three devices, each once, in order per device', async () => {
    const s = setup()
    const f = s.start()
    await until(() => f.stats().targets.cloud?.state === 'up')
    const sent: string[] = []
    for (let n = 0; n < 1_000; n++) {
      await Promise.all(['d1', 'd2', 'd3'].map((d) => {
        const e = event(d, `${d}-${n}`, n)
        sent.push(`${d}-${n}`)
        return f.accept(e.topic, e.frame)
      }))
    }
    await until(() => forwarded(f) === 3_000, 20_000)
    const ids = await stored(s.stream)
    expect(new Set(ids).size).toBe(3_000)
    for (const d of ['d1', 'd2', 'd3']) {
      expect(ids.filter((id) => id.startsWith(`${d}-`))).toEqual(sent.filter((id) => id.startsWith(`${d}-`)))
    }
    expect(f.queue.backlog('cloud').messages).toBe(0)
  })

  it('forwards thousands of events committed at once, and more arriving while they go out, each once and in order', async () => {
    // Far more than the window waits in memory at once: the pump sends from a moving start and
    // cuts the sent part off once half of it is gone, while new commits are appended behind.
    const s = setup()
    const f = s.start()
    await until(() => f.stats().targets.cloud?.state === 'up')
    const sent: string[] = []
    const wave = (from: number, n: number): Promise<void[]> =>
      Promise.all(Array.from({ length: n }, (_, i) => {
        const d = `d${(from + i) % 3}`
        const id = `${d}-${from + i}`
        sent.push(id)
        const e = event(d, id, from + i)
        return f.accept(e.topic, e.frame)!
      }))
    await wave(0, 4_000)
    await until(() => forwarded(f) >= 500)
    await wave(4_000, 3_000)
    await until(() => forwarded(f) >= 5_000, 20_000)
    await wave(7_000, 1_000)
    await until(() => forwarded(f) === 8_000, 30_000)
    const ids = await stored(s.stream)
    expect(ids.length).toBe(8_000)
    expect(new Set(ids).size).toBe(8_000)
    for (const d of ['d0', 'd1', 'd2']) {
      expect(ids.filter((id) => id.startsWith(`${d}-`))).toEqual(sent.filter((id) => id.startsWith(`${d}-`)))
    }
    expect(f.queue.backlog('cloud').messages).toBe(0)
  }, 90_000)

  it('sends what it holds in memory past its memory bound, and reads back only what came after', async () => {
    // 2,500 events of 4 KiB in one commit: over the 8 MiB a pump holds. They went out read back
    // from forward.db, every one (dropped from memory at once); now only later ones are read back.
    const s = setup()
    const f = s.start()
    await until(() => f.stats().targets.cloud?.state === 'up')
    let readBack = 0
    const next = f.queue.next.bind(f.queue)
    f.queue.next = (target, afterSeq, limit) => {
      const rows = next(target, afterSeq, limit)
      readBack += rows.length
      return rows
    }
    const pad = 'x'.repeat(4_096)
    const sent: string[] = []
    const wave = (from: number, n: number): Promise<void[]> =>
      Promise.all(Array.from({ length: n }, (_, i) => {
        const id = `e-${from + i}`
        sent.push(id)
        return f.accept('ob/d1/evt/meter/1/reading', codec.encode({ v: 1, kind: 'event', id, src: 'd1', inst: 'i1', at: 1_795_740_000_000, service: 'meter', version: '1', name: 'reading', payload: { pad } }))!
      }))
    await wave(0, 2_500)
    await wave(2_500, 500)
    await until(() => forwarded(f) === 3_000, 60_000)
    expect(await stored(s.stream)).toEqual(sent)
    expect(readBack).toBeLessThanOrEqual(500)
    expect(f.queue.backlog('cloud').messages).toBe(0)
  }, 90_000)

  it('sends rows another process wrote (a redrive), while events flow and when idle', async () => {
    const s = setup()
    const f = s.start()
    await until(() => f.stats().targets.cloud?.state === 'up')
    const live = event('d1', 'live-0', 0)
    await f.accept(live.topic, live.frame)
    await until(() => forwarded(f) === 1)
    // Another handle on the same file, as `outpost forward redrive` opens it.
    const tool = openForwardQueue({ path: path.join(s.dir, 'forward.db'), limits: {}, access: 'tool' })
    cleanup(() => tool.close())
    const row = (id: string) => ({ target: 'cloud', id, device: 'd9', subject: `${s.stream.replace('F_', 'f')}.d9.reading`, headers: { 'Outpost-Device': 'd9', 'Outpost-Id': id }, contentType: 'application/cbor', body: new Uint8Array([1, 2, 3]), receivedAt: Date.now() })
    tool.append([[row('outside-1')]])
    // The next live event shows the gap; the outside row goes out with it.
    const next = event('d1', 'live-1', 1)
    await f.accept(next.topic, next.frame)
    await until(() => forwarded(f) === 3, 5_000)
    // Idle: nothing else comes, and the pump reads the queue again on its own.
    tool.append([[row('outside-2')]])
    await until(() => forwarded(f) === 4, 10_000)
    expect((await stored(s.stream)).sort()).toEqual(['live-0', 'live-1', 'outside-1', 'outside-2'])
  })

  it('moves a message the stream refuses to the dead-letter table once another process lets go of forward.db, without a reconnect', async () => {
    const s = setup()
    // The stream is made here, with a message size limit; the gateway binds to it.
    const nc = await connect({ servers: NATS })
    cleanup(() => nc.close())
    const cloud = s.config.targets.cloud as Extract<ForwardConfig['targets'][string], { type: 'nats' }>
    await (await jetstreamManager(nc)).streams.add({ name: s.stream, subjects: cloud.stream.subjects, max_msg_size: 512 })
    cloud.stream = { ...cloud.stream, create: false }
    const f = s.start()
    await until(() => f.stats().targets.cloud?.state === 'up')
    const other = new Database(path.join(s.dir, 'forward.db'))
    cleanup(() => other.close())
    const big = codec.encode({ v: 1, kind: 'event', id: 'too-big', src: 'd1', inst: 'i1', at: 1_795_740_000_000, service: 'meter', version: '1', name: 'reading', payload: { pad: 'x'.repeat(2_000) } })
    await f.accept('ob/d1/evt/meter/1/reading', big)
    // Committed; the stream's refusal is on its way: another process takes the write lock first.
    other.exec('BEGIN EXCLUSIVE')
    await new Promise((r) => setTimeout(r, 1_500))
    // Refused meanwhile, and not moved: the lock held the move off (the queue is still readable).
    expect(f.stats().targets.cloud!.deadLettered).toBe(0)
    expect(f.queue.backlog('cloud').messages).toBe(1)
    other.exec('COMMIT')
    await until(() => f.queue.deadCount('cloud') === 1 && f.queue.backlog('cloud').messages === 0, 10_000)
    expect(f.stats().targets.cloud).toMatchObject({ state: 'up', deadLettered: 1 })
    expect(f.queue.dead({ target: 'cloud' }).map((d) => d.id)).toEqual(['too-big'])
  })

  it('keeps what arrives while the target is cut off and sends it all, once, after it is back', async () => {
    const proxy = await tcpProxy('mqtt://127.0.0.1:4222')
    cleanup(() => proxy.close())
    const s = setup([proxy.url.replace('mqtt:', 'nats:')])
    const f = s.start()
    await until(() => f.stats().targets.cloud?.state === 'up')
    const accept = (n: number) => {
      const e = event('d1', `e-${n}`, n)
      return f.accept(e.topic, e.frame)
    }
    for (let n = 0; n < 500; n++) await accept(n)
    await proxy.down()
    for (let n = 500; n < 1_500; n++) await accept(n)
    await proxy.up()
    for (let n = 1_500; n < 2_000; n++) await accept(n)
    await until(() => f.queue.backlog('cloud').messages === 0, 30_000)
    const ids = await stored(s.stream)
    expect(ids).toEqual(Array.from({ length: 2_000 }, (_, n) => `e-${n}`))
  })

  it('backs off from a target that takes the connection but refuses every message for now (a full stream), and sends once it takes them', async () => {
    const s = setup()
    const target = s.config.targets.cloud as Extract<ForwardConfig['targets'][string], { type: 'nats' }>
    // A stream made beforehand that holds two messages and refuses more (discard: new).
    const nc = await connect({ servers: NATS })
    cleanup(() => nc.close())
    const jsm = await jetstreamManager(nc)
    await jsm.streams.add({ name: s.stream, subjects: target.stream.subjects, max_msgs: 2, discard: DiscardPolicy.New, duplicate_window: 60_000_000_000 })
    target.stream = { ...target.stream, create: false }
    const lines: { msg?: string }[] = []
    const log = pino({ level: 'info' }, { write: (l: string) => void lines.push(JSON.parse(l) as { msg?: string }) })
    const f = createForwarder({ config: s.config, path: path.join(s.dir, 'forward.db'), log, backoff: { initialMs: 50, maxMs: 60_000 } })
    cleanup(() => f.close(500))
    f.start()
    for (let n = 0; n < 5; n++) {
      const e = event('m1', `id-${n}`, n)
      await f.accept(e.topic, e.frame)
    }
    await until(() => forwarded(f) === 2 && (f.stats().targets.cloud?.retried ?? 0) > 0, 20_000)
    // Three seconds of refusals: connected again after 50, 100, 200, 400, 800, 1600 ms at most
    // (every 50 ms before: the backoff began again at each connection).
    await new Promise((r) => setTimeout(r, 3_000))
    const again = lines.filter((l) => l.msg === 'target reachable again; sending what waited').length
    expect(again).toBeGreaterThan(0)
    expect(again).toBeLessThanOrEqual(7)
    // Room again: the rest goes, each once.
    await jsm.streams.update(s.stream, { max_msgs: 100 })
    await until(() => forwarded(f) === 5, 120_000)
    expect(await stored(s.stream)).toEqual(['id-0', 'id-1', 'id-2', 'id-3', 'id-4'])
  }, 180_000)
})

