import { randomBytes } from 'node:crypto'
import { jetstreamManager } from '@nats-io/jetstream'
import { connect, type NatsConnection } from '@nats-io/transport-node'
import { describe, expect, it } from 'vitest'
import { isOutpostError } from '../../runtime/errors.js'
import { FORWARD_DEFAULTS, type NatsTargetConfig } from '../../gateway/forward/forward-config.js'
import { createNatsTarget } from '../../gateway/forward/targets/nats-target.js'
import type { ForwardMessage, ForwardTarget } from '../../gateway/forward/target.js'
import { caught } from '../helpers/caught.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { tcpProxy } from '../helpers/tcp-proxy.js'
import { startNatsMqtt } from '../helpers/nats-mqtt.js'
import { freePort, until } from '../helpers/wait.js'

const NATS = 'nats://127.0.0.1:4222'
const cleanup = cleanupAfterEach()

/** A unique stream and subject prefix, deleted after the test. */
function fresh(over: Partial<NatsTargetConfig> = {}, stream: Partial<NatsTargetConfig['stream']> = {}): NatsTargetConfig {
  const r = randomBytes(5).toString('hex')
  const cfg: NatsTargetConfig = {
    type: 'nats', encoding: 'cbor', window: 256, confirmTimeoutMs: 5_000, maxBytes: FORWARD_DEFAULTS.maxBytes, whenFull: 'drop-oldest',
    servers: [NATS], subject: `t${r}.{device}.{event}`,
    stream: { name: `T_${r}`, subjects: [`t${r}.>`], create: true, duplicateWindowMs: 60_000, ...stream },
    ...over,
  }
  cleanup(async () => {
    const nc = await connect({ servers: NATS })
    const jsm = await jetstreamManager(nc)
    await jsm.streams.delete(cfg.stream.name).catch(() => {})
    await nc.close()
  })
  return cfg
}

function target(cfg: NatsTargetConfig): ForwardTarget {
  const t = createNatsTarget('cloud', cfg)
  cleanup(() => t.close())
  return t
}

let seq = 0
function message(cfg: NatsTargetConfig, body: Uint8Array = new TextEncoder().encode(`m${seq}`), id = `id-${randomBytes(6).toString('hex')}`): ForwardMessage {
  return { seq: seq++, id, device: 'd1', subject: cfg.subject.replace('{device}', 'd1').replace('{event}', 'e'), headers: { 'Outpost-Device': 'd1' }, contentType: 'application/cbor', body, receivedAt: Date.now() }
}

async function admin(): Promise<{ nc: NatsConnection; jsm: Awaited<ReturnType<typeof jetstreamManager>> }> {
  const nc = await connect({ servers: NATS })
  cleanup(() => nc.close())
  return { nc, jsm: await jetstreamManager(nc) }
}

describe('NATS JetStream target', () => {
  it('creates the stream with the duplicate window and file storage', async () => {
    const cfg = fresh()
    await target(cfg).connect()
    const info = await (await admin()).jsm.streams.info(cfg.stream.name)
    expect(info.config.subjects).toEqual(cfg.stream.subjects)
    expect(info.config.duplicate_window).toBe(60_000 * 1_000_000)
    expect(info.config.storage).toBe('file')
  })

  it('stores 1,000 messages sent with a window in flight in order, with their headers', async () => {
    const cfg = fresh()
    const t = target(cfg)
    await t.connect()
    const sent = Array.from({ length: 1_000 }, (_, i) => message(cfg, new TextEncoder().encode(`n${i}`)))
    const results = await Promise.all(sent.map((m) => t.send(m)))
    expect(results.every((r) => r.duplicate === false)).toBe(true)
    const { jsm } = await admin()
    expect((await jsm.streams.info(cfg.stream.name)).state.messages).toBe(1_000)
    for (const i of [0, 1, 499, 999]) {
      const stored = await jsm.streams.getMessage(cfg.stream.name, { seq: i + 1 })
      expect(new TextDecoder().decode(stored!.data)).toBe(`n${i}`)
      expect(stored!.header.get('Nats-Msg-Id')).toBe(`d1/${sent[i]!.id}`)
      expect(stored!.header.get('Outpost-Device')).toBe('d1')
      expect(stored!.header.get('Content-Type')).toBe('application/cbor')
    }
  })

  it('stores a re-sent id once and says it was a duplicate', async () => {
    const cfg = fresh()
    const t = target(cfg)
    await t.connect()
    const m = message(cfg)
    expect(await t.send(m)).toEqual({ duplicate: false })
    expect(await t.send(m)).toEqual({ duplicate: true })
    expect((await (await admin()).jsm.streams.info(cfg.stream.name)).state.messages).toBe(1)
  })

  it('rejects connect with TARGET_REJECTED when create is false and there is no stream', async () => {
    const err = await caught(target(fresh({}, { create: false })).connect())
    expect(isOutpostError(err, 'TARGET_REJECTED')).toBe(true)
  })

  it('rejects connect with TARGET_REJECTED when an existing stream does not take the template subjects', async () => {
    const cfg = fresh()
    const { jsm } = await admin()
    await jsm.streams.add({ name: cfg.stream.name, subjects: [`other${cfg.stream.name}.>`] })
    const err = await caught(target(cfg).connect())
    expect(isOutpostError(err, 'TARGET_REJECTED')).toBe(true)
    expect((await jsm.streams.info(cfg.stream.name)).config.subjects).toEqual([`other${cfg.stream.name}.>`])
  })

  it('rejects connect with a retryable TARGET_UNAVAILABLE when no server listens', async () => {
    const cfg = fresh({ servers: [`nats://127.0.0.1:${await freePort()}`] })
    const err = await caught(target(cfg).connect())
    expect(isOutpostError(err, 'TARGET_UNAVAILABLE')).toBe(true)
    expect((err as { retryable: boolean }).retryable).toBe(true)
  })

  it('rejects a payload over max_payload with TARGET_REJECTED and goes on sending', async () => {
    const cfg = fresh()
    const t = target(cfg)
    await t.connect()
    const err = await caught(t.send(message(cfg, new Uint8Array(2 * 1024 * 1024))))
    expect(isOutpostError(err, 'TARGET_REJECTED')).toBe(true)
    expect(await t.send(message(cfg))).toEqual({ duplicate: false })
  })

  it('rejects a message the stream finds too large (max_msg_size) with TARGET_REJECTED', async () => {
    const cfg = fresh({}, { create: false })
    const { jsm } = await admin()
    await jsm.streams.add({ name: cfg.stream.name, subjects: cfg.stream.subjects, max_msg_size: 100 })
    const t = target(cfg)
    await t.connect()
    const err = await caught(t.send(message(cfg, new Uint8Array(500))))
    expect(isOutpostError(err, 'TARGET_REJECTED')).toBe(true)
  })

  it('reports a cut link once, fails sends in flight as retryable, and connects again', async () => {
    const proxy = await tcpProxy('mqtt://127.0.0.1:4222')
    cleanup(() => proxy.close())
    const cfg = fresh({ servers: [proxy.url.replace('mqtt:', 'nats:')] })
    const t = target(cfg)
    await t.connect()
    const downs: Error[] = []
    t.onDown((e) => downs.push(e))
    const inFlight = Array.from({ length: 200 }, () => t.send(message(cfg)).then(() => undefined, (e: unknown) => e))
    await proxy.down()
    const outcomes = await Promise.all(inFlight)
    await until(() => downs.length > 0)
    const failures = outcomes.filter((o) => o !== undefined)
    expect(failures.length).toBeGreaterThan(0)
    for (const f of failures) expect(isOutpostError(f, 'TARGET_UNAVAILABLE') && (f as { retryable: boolean }).retryable).toBe(true)
    expect(downs).toHaveLength(1)
    expect(isOutpostError(await caught(t.send(message(cfg))), 'TARGET_UNAVAILABLE')).toBe(true)
    await proxy.up()
    await t.connect()
    expect(await t.send(message(cfg))).toEqual({ duplicate: false })
    await t.close()
    expect(downs).toHaveLength(1)
  })

  it('a stream deleted under it: sends fail as retryable TARGET_UNAVAILABLE (no responders), not as refusals', async () => {
    const cfg = fresh()
    const t = target(cfg)
    await t.connect()
    expect(await t.send(message(cfg))).toEqual({ duplicate: false })
    await (await admin()).jsm.streams.delete(cfg.stream.name)
    const err = await caught(t.send(message(cfg)))
    expect(isOutpostError(err, 'TARGET_UNAVAILABLE')).toBe(true)
    expect((err as { retryable: boolean }).retryable).toBe(true)
  })

  it('a subject the server does not let it publish to: that message is TARGET_REJECTED, the others are stored', async () => {
    const r = randomBytes(4).toString('hex')
    const server = await startNatsMqtt({
      users: [{ user: 'gw', password: 'gw-secret', permissions: { publish: { allow: ['$JS.API.>', `p${r}.ok.>`] }, subscribe: { allow: ['_INBOX.>'] } } }],
    })
    cleanup(() => server.dispose())
    const cfg = fresh({ servers: [server.natsUrl], user: 'gw', pass: 'gw-secret', subject: `p${r}.{device}.{event}` }, { name: `P_${r}`, subjects: [`p${r}.>`] })
    const t = target(cfg)
    await t.connect()
    const ok = { ...message(cfg), subject: `p${r}.ok.e` }
    const denied = { ...message(cfg), subject: `p${r}.secret.e` }
    const [a, b, c] = await Promise.all([t.send(ok).then(() => 'stored', (e: unknown) => e), t.send(denied).then(() => 'stored', (e: unknown) => e), t.send({ ...message(cfg), subject: `p${r}.ok.f` }).then(() => 'stored', (e: unknown) => e)])
    expect(a).toBe('stored')
    expect(isOutpostError(b, 'TARGET_REJECTED')).toBe(true)
    expect(String((b as Error).message)).toMatch(/not permitted/)
    expect(c).toBe('stored')
  })
})
