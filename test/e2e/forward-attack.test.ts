// Event forwarding attacked from outside: a gateway process (`outpost gateway --config`,
// authentication on) forwarding to NATS JetStream (the real server), a plain mqtt.js client logged
// in as a device sending what a hostile or broken device sends, and a witness device whose events
// must reach JetStream exactly once whatever the other does. Then forward.db unusable at start
// (garbage, a folder, a read-only disk), full while the gateway runs, and a SIGTERM with a
// backlog waiting for a target that is down.
// Defects found here: an event over 256 KiB (the broker takes 1 MiB, the gatekeeper lets it
// through, every subscriber gets it) was dropped by the forwarder as `malformed`; and a device
// sending what the target refuses for good (an event name with a space, an id with a line break,
// a frame over NATS's max_payload) grew the dead-letter table without bound.
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream'
import { connect as natsConnect, type NatsConnection } from '@nats-io/transport-node'
import mqtt, { type MqttClient } from 'mqtt'
import mqttPacket from 'mqtt-packet'
import { describe, expect, it } from 'vitest'
import { openForwardQueue } from '../../gateway/forward/forward-queue.js'
import { createEnvelopeCodec } from '../../runtime/wire/codec.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { outpost, startGatewayCli, type GatewayCli } from '../helpers/gateway-cli.js'
import { SHARING } from '../helpers/frame-mutator.js'
import { eventSlots, FIELD, KIND, rawFrame, rawId } from '../helpers/raw-wire.js'
import { mountSmallDisk } from '../helpers/small-disk.js'
import { tcpProxy } from '../helpers/tcp-proxy.js'
import { until } from '../helpers/wait.js'
import { HTTP_TOKEN, startGatewayProcess, type GatewayProcess } from './gateway-attack-process.js'

const NATS_URL = 'nats://127.0.0.1:4222'
const KiB = 1024
const codec = createEnvelopeCodec({ maxFrameBytes: Number.MAX_SAFE_INTEGER })

/** A JetStream stream and subject root of this run, and the forward section that sends every event there. */
function jetStreamTarget(opts: { servers?: string; extra?: string } = {}): { stream: string; root: string; yaml: string } {
  const tag = randomBytes(4).toString('hex')
  const stream = `FWD_ATK_${tag}`
  const root = `fwdatk${tag}`
  const yaml = `forward:
  targets:
    js: { type: nats, servers: ${opts.servers ?? NATS_URL}, stream: { name: ${stream}, subjects: ['${root}.>'] }, subject: '${root}.{device}.{service}.{version}.{event}'${opts.extra ?? ''} }
  routes:
    - { events: ['#'], to: [js] }
`
  return { stream, root, yaml }
}

/** A well-formed event of `src`, numbered `n` (its id fresh unless given). */
const good = (src: string, n: number, opts: { id?: string; name?: string; pad?: number } = {}): Buffer =>
  rawFrame(eventSlots({ src, service: 'meter', name: opts.name ?? 'reading', payload: { n, ...(opts.pad === undefined ? {} : { pad: 'p'.repeat(opts.pad) }) }, ...(opts.id === undefined ? {} : { id: opts.id }) }))

/** An event of `src` with some envelope slots replaced. */
const patched = (src: string, patch: Record<number, unknown>): Buffer => {
  const slots = eventSlots({ src, service: 'meter', name: 'reading', payload: { n: 0 } })
  for (const [k, v] of Object.entries(patch)) slots[Number(k)] = v
  return rawFrame(slots)
}

/**
 * Publishes and says what the gateway did: `acked` (PUBACK or PUBCOMP; at QoS 0, written), or
 * `closed` when it closed the connection first (a refused publish is never acknowledged).
 */
function publishOutcome(c: MqttClient, topic: string, payload: Buffer, opts: { qos?: 0 | 1 | 2; retain?: boolean } = {}): Promise<'acked' | 'closed'> {
  return new Promise((resolve) => {
    if (!c.connected || c.disconnecting) return resolve('closed')
    const closed = (): void => resolve('closed')
    c.once('close', closed)
    c.publish(topic, payload, { qos: opts.qos ?? 1, retain: opts.retain ?? false }, (err) => {
      c.off('close', closed)
      resolve(err == null ? 'acked' : 'closed')
    })
  })
}

interface Stored {
  subject: string
  src: string
  n: number | undefined
  msgId: string | undefined
}

/** Every message in the stream, in order: subject, sender and reading number (from the CBOR body). */
async function streamMessages(nc: NatsConnection, jsm: JetStreamManager, stream: string): Promise<Stored[]> {
  const total = (await jsm.streams.info(stream)).state.messages
  const out: Stored[] = []
  if (total === 0) return out
  const consumer = await jetstream(nc).consumers.get(stream)
  while (out.length < total) {
    const batch = await consumer.fetch({ max_messages: total - out.length, expires: 5_000 })
    for await (const m of batch) {
      const d = codec.decode(m.data)
      out.push({ subject: m.subject, src: d.ok ? d.envelope.src : '?', n: d.ok ? (d.envelope.payload as { n?: number }).n : undefined, msgId: m.headers?.get('Nats-Msg-Id') })
      if (out.length === total) break
    }
  }
  return out
}

/** Counter values of one metric from /metrics text, by their label set as written. */
function counters(metrics: string, name: string): Record<string, number> {
  const out: Record<string, number> = {}
  for (const line of metrics.split('\n')) {
    const m = new RegExp(`^${name}\\{(.*)\\} (\\S+)$`).exec(line)
    if (m !== null) out[m[1]!] = Number(m[2])
  }
  return out
}

/** No line of the process looks like a stack trace. */
function expectNoStackTrace(lines: readonly string[]): void {
  const traces = lines.filter((l) => /^\s+at .+:\d+:\d+\)?$/.test(l) || l.includes('"stack":') || /\\n\s+at /.test(l))
  expect(traces).toEqual([])
}

interface ForwardView {
  targets: Record<string, { state: string; forwarded: number; duplicates: number; dead: number; backlog: { messages: number; bytes: number }; dropped: Record<string, number> }>
  dropped: Record<string, number>
}

const forwardOf = async (gw: { get(route: string): Promise<Response> }): Promise<ForwardView> => (await (await gw.get('/forward')).json()) as ForwardView

/** Polls /forward until `check` holds. @throws with the last view after `ms` */
async function forwardUntil(gw: { get(route: string): Promise<Response> }, check: (v: ForwardView) => boolean, ms = 30_000): Promise<ForwardView> {
  const end = Date.now() + ms
  for (;;) {
    const v = await forwardOf(gw)
    if (check(v)) return v
    if (Date.now() > end) throw new Error(`forward view not reached: ${JSON.stringify(v)}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

/** One raw MQTT 3.1.1 connection, for what mqtt.js will not send (a QoS 2 PUBLISH sent twice before its PUBREL). */
async function rawConnection(url: string, clientId: string, password: string): Promise<{ send(p: mqttPacket.Packet): void; next(cmd: string): Promise<mqttPacket.Packet>; end(): void }> {
  const { port } = new URL(url)
  const socket = net.connect(Number(port), '127.0.0.1')
  socket.on('error', () => {})
  const parser = mqttPacket.parser({ protocolVersion: 4 })
  const got: mqttPacket.Packet[] = []
  parser.on('packet', (p) => got.push(p))
  socket.on('data', (d) => parser.parse(d))
  const send = (p: mqttPacket.Packet): void => void socket.write(mqttPacket.generate(p))
  const next = async (cmd: string): Promise<mqttPacket.Packet> => {
    await until(() => got.some((p) => p.cmd === cmd) || socket.destroyed, 10_000)
    const i = got.findIndex((p) => p.cmd === cmd)
    if (i < 0) throw new Error(`connection closed before ${cmd}`)
    return got.splice(i, 1)[0]!
  }
  await new Promise<void>((r) => socket.once('connect', () => r()))
  send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId, username: clientId, password: Buffer.from(password), clean: true, keepalive: 30 })
  await next('connack')
  return { send, next, end: () => socket.destroy() }
}

describe('forwarding under attack from a device', () => {
  const cleanup = cleanupAfterEach()

  /** A gateway process forwarding to a fresh stream, devices `witness` and `mallory` added, a NATS client for the cloud side. */
  const scene = async (opts: { extra?: string } = {}): Promise<{ gw: GatewayProcess; nc: NatsConnection; jsm: JetStreamManager; stream: string; root: string }> => {
    const { stream, root, yaml } = jetStreamTarget({ extra: opts.extra })
    const nc = await natsConnect({ servers: NATS_URL })
    cleanup(() => nc.close())
    const jsm = await jetstreamManager(nc)
    cleanup(() => jsm.streams.delete(stream).catch(() => {}))
    const gw = await startGatewayProcess({ devices: ['witness', 'mallory'], extra: yaml })
    cleanup(() => gw.stop())
    return { gw, nc, jsm, stream, root }
  }

  it('hostile frames, forged senders, other topics, retained, huge, QoS 0/1/2: refused or dead-lettered and counted, never stored; the witness\'s events each stored once', async () => {
    const { gw, nc, jsm, stream, root } = await scene()
    const witness = await gw.connect('witness')
    cleanup(() => witness.end(true))
    let mallory: MqttClient | undefined
    // A refused publish ends the connection (mqtt.js may report the error before its 'close'): the next case starts a new one.
    let refused = true
    const malloryNow = async (): Promise<MqttClient> => {
      if (!refused && mallory?.connected === true) return mallory
      mallory?.end(true)
      const c = await gw.connect('mallory')
      c.on('error', () => {})
      cleanup(() => c.end(true))
      return (mallory = c)
    }
    const maxPayload = nc.info!.max_payload
    let w = 0
    const witnessSends = async (): Promise<void> => {
      w++
      expect(await publishOutcome(witness, 'ob/witness/evt/meter/1/reading', good('witness', w), { qos: (w % 3) as 0 | 1 | 2 }), `witness event ${w}`).toBe('acked')
    }
    const OWN = 'ob/mallory/evt/meter/1/reading'
    const frame = good('mallory', 1)
    type Case = [what: string, topic: string, payload: Buffer, outcome: 'refused' | 'dead' | 'stored', reason?: string, opts?: { qos?: 0 | 1 | 2; retain?: boolean }]
    const cases: Case[] = [
      // Not an envelope at all.
      ['garbage bytes', OWN, Buffer.from([0xff, 0x00, 0x13, 0x37]), 'refused', 'malformed'],
      ['truncated frame', OWN, frame.subarray(0, frame.length - 3), 'refused', 'malformed'],
      ['trailing bytes', OWN, Buffer.concat([frame, Buffer.from([0x01])]), 'refused', 'malformed'],
      ['a frame that contains itself', OWN, SHARING[0]!, 'refused', 'malformed'],
      ['a payload that contains itself', OWN, rawFrame(eventSlots({ src: 'mallory', service: 'meter', name: 'reading', payload: null }), { [FIELD.payload]: SHARING[1]! }), 'refused', 'malformed'],
      ['empty payload', OWN, Buffer.alloc(0), 'refused', 'malformed'],
      ['a CBOR map, not an array', OWN, Buffer.from([0xa1, 0x61, 0x76, 0x01]), 'refused', 'malformed'],
      // Envelope fields of the wrong type or out of range.
      ['version 2', OWN, patched('mallory', { [FIELD.v]: 2 }), 'refused', 'malformed'],
      ['kind as text', OWN, patched('mallory', { [FIELD.kind]: 'event' }), 'refused', 'malformed'],
      ['id a number', OWN, patched('mallory', { [FIELD.id]: 42 }), 'refused', 'malformed'],
      ['id of 65 characters', OWN, patched('mallory', { [FIELD.id]: 'I'.repeat(65) }), 'refused', 'malformed'],
      ['src a list', OWN, patched('mallory', { [FIELD.src]: ['mallory'] }), 'refused', 'malformed'],
      ['inst a number', OWN, patched('mallory', { [FIELD.inst]: 7 }), 'refused', 'malformed'],
      ['at as text', OWN, patched('mallory', { [FIELD.at]: 'now' }), 'refused', 'malformed'],
      ['at Infinity', OWN, patched('mallory', { [FIELD.at]: Infinity }), 'refused', 'malformed'],
      ['service a number', OWN, patched('mallory', { [FIELD.service]: 5 }), 'refused', 'malformed'],
      ['a command on an event topic', OWN, patched('mallory', { [FIELD.kind]: KIND.command }), 'refused', 'layout'],
      ['another service than its topic', OWN, patched('mallory', { [FIELD.service]: 'thermo' }), 'refused', 'layout'],
      // Someone else's name or place.
      ['forged src', OWN, good('witness', 9_999), 'refused', 'sender'],
      ['on the witness\'s topic', 'ob/witness/evt/meter/1/reading', frame, 'refused', 'namespace'],
      ['on the witness\'s topic, as the witness', 'ob/witness/evt/meter/1/reading', good('witness', 9_998), 'refused', 'namespace'],
      ['on the gateway\'s topic', 'ob/gateway/evt/meter/1/reading', good('gateway', 9_997), 'refused', 'namespace'],
      ['retained', OWN, good('mallory', 2), 'refused', 'retain', { retain: true }],
      ['retained at QoS 0', OWN, good('mallory', 3), 'refused', 'retain', { qos: 0, retain: true }],
      ['malformed at QoS 2', OWN, Buffer.from([0xff]), 'refused', 'malformed', { qos: 2 }],
      ['a frame over the broker\'s 1 MiB', OWN, good('mallory', 4, { pad: 1536 * KiB }), 'refused'],
      // Taken by the gatekeeper (they are the device's own, well-formed events), refused by JetStream for good.
      ['an event name with a space', 'ob/mallory/evt/meter/1/read ing', good('mallory', 5, { name: 'read ing' }), 'dead'],
      ['a wildcard as service', 'ob/mallory/evt/*/1/reading', rawFrame(eventSlots({ src: 'mallory', service: '*', name: 'reading', payload: { n: 6 } })), 'dead'],
      ['an empty subject token from the version', 'ob/mallory/evt/meter/1..2/reading', rawFrame(eventSlots({ src: 'mallory', service: 'meter', version: '1..2', name: 'reading', payload: { n: 7 } })), 'dead'],
      ['a line break in the id (a header injection)', OWN, good('mallory', 8, { id: `A\r\nNats-Msg-Id: ${rawId()}` }), 'dead'],
      ['a frame over NATS\'s max_payload', OWN, good('mallory', 9, { pad: maxPayload - 200 }), 'dead'],
      // Well-formed and within every limit: forwarded like any device's.
      ['300 KiB', OWN, good('mallory', 10, { pad: 300 * KiB }), 'stored'],
      ['QoS 0', OWN, good('mallory', 11), 'stored', undefined, { qos: 0 }],
      ['QoS 2', OWN, good('mallory', 12), 'stored', undefined, { qos: 2 }],
    ]
    const denied: Record<string, number> = {}
    let dead = 0
    let stored = 0
    await witnessSends()
    for (const [what, topic, payload, outcome, reason, opts] of cases) {
      const c = await malloryNow()
      const got = await publishOutcome(c, topic, payload, opts)
      refused = outcome === 'refused'
      // QoS 0 has nothing to acknowledge: a refusal shows as the connection closing right after.
      if (opts?.qos === 0 && outcome === 'refused') await until(() => !c.connected, 10_000)
      else expect(got, what).toBe(outcome === 'refused' ? 'closed' : 'acked')
      if (reason !== undefined) denied[`action="publish",reason="${reason}"`] = (denied[`action="publish",reason="${reason}"`] ?? 0) + 1
      if (outcome === 'dead') dead++
      if (outcome === 'stored') stored++
      await witnessSends()
    }
    // A QoS 2 PUBLISH sent again (DUP) before its PUBREL: one event, stored once.
    mallory?.end(true)
    const raw = await rawConnection(gw.mqttUrl, 'mallory', gw.secrets.mallory!)
    const twice = good('mallory', 13)
    raw.send({ cmd: 'publish', topic: OWN, payload: twice, qos: 2, messageId: 7, dup: false, retain: false })
    raw.send({ cmd: 'publish', topic: OWN, payload: twice, qos: 2, messageId: 7, dup: true, retain: false })
    await raw.next('pubrec')
    await raw.next('pubrec')
    raw.send({ cmd: 'pubrel', messageId: 7 })
    await raw.next('pubcomp')
    raw.end()
    stored++
    await witnessSends()
    // Mallory takes the id the witness is about to use: both events are stored, because the
    // target's dedupe key (Nats-Msg-Id) names the device as well as the envelope id.
    const taken = rawId()
    expect(await publishOutcome(await malloryNow(), OWN, good('mallory', 14, { id: taken }))).toBe('acked')
    stored++
    w++
    expect(await publishOutcome(witness, 'ob/witness/evt/meter/1/reading', good('witness', w, { id: taken }), { qos: 1 }), 'the witness, with an id mallory used').toBe('acked')

    const view = await forwardUntil(gw, (v) => v.targets.js!.backlog.messages === 0 && v.targets.js!.dead === dead && v.targets.js!.forwarded >= w + stored)
    // Nothing was dropped as undecodable: the gatekeeper refused what was not an envelope, and the 300 KiB event went out.
    expect(view.dropped).toEqual({})
    expect(view.targets.js!.dropped).toEqual({})
    const metrics = await (await gw.get('/metrics')).text()
    expect(counters(metrics, 'outpost_gateway_denied_total')).toEqual(denied)
    expect(counters(metrics, 'outpost_gateway_forward_dead_letters')).toEqual({ 'target="js"': dead })

    // JetStream: each of the witness's events once, and of mallory's only the good ones.
    const messages = await streamMessages(nc, jsm, stream)
    const fromWitness = messages.filter((m) => m.subject === `${root}.witness.meter.1.reading`)
    expect(fromWitness.map((m) => m.n)).toEqual(Array.from({ length: w }, (_, i) => i + 1))
    expect(fromWitness.every((m) => m.src === 'witness')).toBe(true)
    expect(messages.filter((m) => m.subject !== `${root}.witness.meter.1.reading`).map((m) => [m.subject, m.n])).toEqual([
      [`${root}.mallory.meter.1.reading`, 10],
      [`${root}.mallory.meter.1.reading`, 11],
      [`${root}.mallory.meter.1.reading`, 12],
      [`${root}.mallory.meter.1.reading`, 13],
      [`${root}.mallory.meter.1.reading`, 14],
    ])
    expect(view.targets.js!.duplicates).toBe(1)

    // The operator sees the dead letters with the target's reasons, escaped.
    const list = await outpost(['forward', 'dead', '--config', gw.configFile])
    expect(list.code, list.err).toBe(0)
    const lines = list.out.trim().split('\n')
    expect(lines).toHaveLength(dead)
    expect(list.out).not.toContain('\r')
    expect(lines.join('\n')).toMatch(/whitespace|invalid subject/)
    expect(lines.join('\n')).toMatch(/max_payload/)
    expect(gw.alive()).toBe(true)
    expectNoStackTrace(gw.lines)
  }, 120_000)

  it('a device flooding events the target refuses for good: its dead letters stay within maxBytes, the newest kept; the witness is still forwarded', async () => {
    const { gw, nc, jsm, stream } = await scene({ extra: ', maxBytes: 65536' })
    const mallory = await gw.connect('mallory')
    cleanup(() => mallory.end(true))
    const ids: string[] = []
    // 300 events of 2 KiB each, on a subject no stream can take: 600 KiB of dead letters, unbounded before.
    for (let n = 1; n <= 300; n++) {
      const id = rawId()
      ids.push(id)
      expect(await publishOutcome(mallory, 'ob/mallory/evt/meter/1/bad name', good('mallory', n, { id, name: 'bad name', pad: 2 * KiB })), `event ${n}`).toBe('acked')
    }
    const witness = await gw.connect('witness')
    cleanup(() => witness.end(true))
    expect(await publishOutcome(witness, 'ob/witness/evt/meter/1/reading', good('witness', 1))).toBe('acked')
    const view = await forwardUntil(gw, (v) => v.targets.js!.forwarded === 1 && v.targets.js!.backlog.messages === 0)
    const dead = JSON.parse((await outpost(['forward', 'dead', '--json', '--limit', '1000', '--config', gw.configFile])).out) as { id: string }[]
    // Each dead letter is over 2 KiB: at most 32 fit in 64 KiB; the oldest went first.
    expect(dead.length).toBeLessThanOrEqual(32)
    expect(dead.length).toBeGreaterThanOrEqual(20)
    expect(view.targets.js!.dead).toBe(dead.length)
    expect(dead.map((d) => d.id)).toEqual(ids.slice(-dead.length))
    expect((await jsm.streams.info(stream)).state.messages).toBe(1)
    expect((await streamMessages(nc, jsm, stream))[0]).toMatchObject({ src: 'witness', n: 1 })
    expect(gw.alive()).toBe(true)
    expectNoStackTrace(gw.lines)
  }, 120_000)
})

describe('forward.db and the gateway process', () => {
  const cleanup = cleanupAfterEach()

  /** A folder with a gateway config (auth on, ports 0, the HTTP token) forwarding to `target`, and devices added. */
  const folder = async (yaml: string, devices: string[] = []): Promise<{ dir: string; config: string; dataDir: string; secrets: Record<string, string> }> => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-fwd-atk-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    const config = path.join(dir, 'gateway.yaml')
    writeFileSync(config, `dataDir: data\nmqtt: { port: 0 }\nhttp: { port: 0, token: ${HTTP_TOKEN} }\nlog: { level: info, format: json }\n${yaml}`)
    const secrets: Record<string, string> = {}
    for (const id of devices) {
      const r = await outpost(['devices', 'add', id, '--config', config, '--json'])
      if (r.code !== 0) throw new Error(r.err)
      secrets[id] = (JSON.parse(r.out) as { secret: string }).secret
    }
    mkdirSync(path.join(dir, 'data'), { recursive: true })
    return { dir, config, dataDir: path.join(dir, 'data'), secrets }
  }

  /**
   * A gateway process forwarding to a stream of its own (through `servers` when given) whose
   * forward.db alone (with its -wal and -shm, which SQLite keeps beside the file a link points
   * to) lies on a tmpfs of `size`; device meter-1 added.
   */
  const onSmallDisk = async (size: string, servers?: string) => {
    const { stream, root, yaml } = jetStreamTarget(servers === undefined ? {} : { servers })
    const nc = await natsConnect({ servers: NATS_URL })
    cleanup(() => nc.close())
    const jsm = await jetstreamManager(nc)
    cleanup(() => jsm.streams.delete(stream).catch(() => {}))
    const f = await folder(yaml, ['meter-1'])
    const disk = mountSmallDisk(path.join(f.dir, 'disk'), size)
    if (disk === undefined) throw new Error('these tests mount a tmpfs: run them as root')
    cleanup(() => disk.dispose())
    symlinkSync(path.join(disk.dir, 'forward.db'), path.join(f.dataDir, 'forward.db'))
    const lines: string[] = []
    const gw: GatewayCli = await startGatewayCli(f.config, lines)
    cleanup(async () => {
      gw.child.kill('SIGTERM')
      await until(gw.exited, 15_000)
    })
    const get = (route: string): Promise<Response> => fetch(gw.http + route, { headers: { authorization: `Bearer ${HTTP_TOKEN}` } })
    return { stream, root, nc, jsm, f, disk, lines, gw, get }
  }

  /** `outpost gateway` that must stop at start: its one stderr line. */
  const refusedStart = async (config: string): Promise<string> => {
    const r = await outpost(['gateway', '--config', config], {}, 30_000)
    expect(r.code, r.out + r.err).toBe(1)
    const lines = r.err.trim().split('\n')
    expect(lines, r.err).toHaveLength(1)
    expectNoStackTrace([...r.out.split('\n'), ...lines])
    return lines[0]!
  }

  it('forward.db that is garbage, a folder, or on a read-only disk: the gateway stops at start with one typed line', async () => {
    const { stream, yaml } = jetStreamTarget()
    const nc = await natsConnect({ servers: NATS_URL })
    cleanup(() => nc.close())
    const jsm = await jetstreamManager(nc)
    cleanup(() => jsm.streams.delete(stream).catch(() => {}))

    const garbage = await folder(yaml)
    const junk = randomBytes(16 * KiB)
    writeFileSync(path.join(garbage.dataDir, 'forward.db'), junk)
    const line = await refusedStart(garbage.config)
    expect(line).toMatch(new RegExp(`^outpost: STORE_CORRUPT: database ${path.join(garbage.dataDir, 'forward.db')} is damaged .*; moved to .*forward\\.db\\.corrupt-`))
    // The damaged file is kept beside, as it was, for whoever wants to look into it; the next start begins a new queue.
    const aside = readdirSync(garbage.dataDir).filter((f) => f.startsWith('forward.db.corrupt-'))
    expect(aside).toHaveLength(1)
    expect(readFileSync(path.join(garbage.dataDir, aside[0]!)).equals(junk)).toBe(true)
    const lines: string[] = []
    const again = await startGatewayCli(garbage.config, lines)
    again.child.kill('SIGTERM')
    await until(again.exited, 15_000)

    const folderInstead = await folder(yaml)
    mkdirSync(path.join(folderInstead.dataDir, 'forward.db'))
    expect(await refusedStart(folderInstead.config)).toMatch(/^outpost: STORE_FAILED: database .*forward\.db failed: unable to open database file/)

    // forward.db on a disk of its own that went read-only (the rest of the data folder is writable).
    const ro = await folder(yaml)
    const disk = mountSmallDisk(path.join(ro.dir, 'disk'), '4m')
    if (disk === undefined) throw new Error('these tests mount a tmpfs: run them as root')
    cleanup(() => disk.dispose())
    const queue = openForwardQueue({ path: path.join(disk.dir, 'forward.db'), limits: {} })
    queue.close()
    disk.readOnly()
    symlinkSync(path.join(disk.dir, 'forward.db'), path.join(ro.dataDir, 'forward.db'))
    expect(await refusedStart(ro.config)).toMatch(/^outpost: STORE_READ_ONLY: database .*forward\.db or its folder cannot be written/)
  }, 120_000)

  it('forward.db on a disk that fills up: events are not acknowledged and counted as `store`; the gateway stays up; once there is room, every event is stored once', async () => {
    // Room for SQLite's write-ahead log (up to 4 MiB before it is checkpointed) once the filler is gone.
    const { stream, root, nc, jsm, f, disk, lines, gw, get } = await onSmallDisk('8m')
    expect(existsSync(path.join(disk.dir, 'forward.db'))).toBe(true)

    // A device whose outbox sends an event again until the gateway acknowledges it (same id, same bytes).
    const N = 60
    let acked = 0
    let refusals = 0
    let client: MqttClient | undefined
    cleanup(() => client?.end(true))
    const send = async (from: number, to: number): Promise<void> => {
      for (let n = from; n <= to; n++) {
        const frame = good('meter-1', n, { id: `EVT${String(n).padStart(23, '0')}`, pad: 8 * KiB })
        for (;;) {
          if (client?.connected !== true) {
            client?.end(true)
            client = await mqtt.connectAsync(gw.url, { clientId: 'meter-1', username: 'meter-1', password: f.secrets['meter-1'], reconnectPeriod: 0 })
            client.on('error', () => {})
          }
          if ((await publishOutcome(client, 'ob/meter-1/evt/meter/1/reading', frame)) === 'acked') break
          // Not acknowledged: the gateway closes the connection; the device connects again and resends.
          client.end(true)
          client = undefined
          refusals++
          await new Promise((r) => setTimeout(r, 100))
        }
        acked = n
      }
    }
    await send(1, 10)
    expect(refusals).toBe(0)
    // The disk fills up (another program's files, say).
    const filler = path.join(disk.dir, 'filler')
    try {
      execFileSync('dd', ['if=/dev/zero', `of=${filler}`, 'bs=64k'], { stdio: 'ignore' })
    } catch {
      // dd stops with ENOSPC: the disk is full, which is the point.
    }
    const sending = send(11, N)
    await until(() => refusals >= 3, 30_000)
    const during = await forwardOf({ get })
    expect(during.dropped.store).toBeGreaterThanOrEqual(1)
    expect(gw.exited()).toBe(false)
    const ready = await get('/healthz')
    expect(ready.status).toBe(200)
    const stuckAt = acked
    rmSync(filler)
    await sending
    expect(acked).toBe(N)
    const after = await forwardUntil({ get }, (v) => v.targets.js!.backlog.messages === 0 && v.targets.js!.forwarded >= N)
    expect(after.targets.js!.dead).toBe(0)
    const messages = await streamMessages(nc, jsm, stream)
    expect(messages.filter((m) => m.subject === `${root}.meter-1.meter.1.reading`).map((m) => m.n)).toEqual(Array.from({ length: N }, (_, i) => i + 1))
    // The log says it, not once per event.
    const storeLines = lines.filter((l) => l.includes('forward queue cannot be written'))
    expect(storeLines.length).toBeGreaterThanOrEqual(1)
    expect(storeLines.length).toBeLessThanOrEqual(3)
    expect(stuckAt).toBeLessThan(N)
    expect(after.dropped.store).toBeGreaterThanOrEqual(1)
    expectNoStackTrace(lines)
  }, 120_000)

  it('forward.db on a small disk while the target is down: the queue stops short of filling it, and once the target is back the backlog drains and new events are taken again', async () => {
    const proxy = await tcpProxy(NATS_URL)
    cleanup(() => proxy.close())
    const { stream, root, nc, jsm, f, gw, get } = await onSmallDisk('6m', `nats://127.0.0.1:${new URL(proxy.url).port}`)
    await forwardUntil({ get }, (v) => v.targets.js!.state === 'up')
    await proxy.down()

    let client: MqttClient | undefined
    cleanup(() => client?.end(true))
    const frame = (n: number): Buffer => good('meter-1', n, { id: `EVT${String(n).padStart(23, '0')}`, pad: 16 * KiB })
    /** Sends event n until it is acknowledged, or gives up after `tries` refusals; whether it was. */
    const deliver = async (n: number, tries: number): Promise<boolean> => {
      for (let t = 0; t < tries; t++) {
        if (client?.connected !== true) {
          client?.end(true)
          client = await mqtt.connectAsync(gw.url, { clientId: 'meter-1', username: 'meter-1', password: f.secrets['meter-1'], reconnectPeriod: 0 })
          client.on('error', () => {})
        }
        if ((await publishOutcome(client, 'ob/meter-1/evt/meter/1/reading', frame(n))) === 'acked') return true
        client.end(true)
        client = undefined
        await new Promise((r) => setTimeout(r, 200))
      }
      return false
    }
    // The cloud is away: events of 16 KiB wait on the small disk until it is nearly full.
    let n = 0
    while (await deliver(n + 1, 3)) n++
    expect(n).toBeGreaterThan(20)
    const full = await forwardOf({ get })
    expect(full.dropped.store).toBeGreaterThanOrEqual(1)
    expect(full.targets.js!.backlog.messages).toBe(n)
    // Back: what waited is sent, confirmed and removed, and the queue takes new events again.
    await proxy.up()
    await forwardUntil({ get }, (v) => v.targets.js!.backlog.messages === 0 && v.targets.js!.forwarded >= n, 60_000)
    const more = n + 10
    for (let m = n + 1; m <= more; m++) expect(await deliver(m, 50), `event ${m} after the drain`).toBe(true)
    await forwardUntil({ get }, (v) => v.targets.js!.backlog.messages === 0 && v.targets.js!.forwarded >= more, 60_000)
    const messages = await streamMessages(nc, jsm, stream)
    expect(messages.filter((m) => m.subject === `${root}.meter-1.meter.1.reading`).map((m) => m.n)).toEqual(Array.from({ length: more }, (_, i) => i + 1))
    expect(gw.exited()).toBe(false)
  }, 180_000)

  it('SIGTERM with a backlog waiting for a target that is down: the gateway exits 0; started again with the target up, every acknowledged event is stored once', async () => {
    const proxy = await tcpProxy(NATS_URL)
    cleanup(() => proxy.close())
    await proxy.down()
    const { stream, root, yaml } = jetStreamTarget({ servers: `nats://127.0.0.1:${new URL(proxy.url).port}` })
    const nc = await natsConnect({ servers: NATS_URL })
    cleanup(() => nc.close())
    const jsm = await jetstreamManager(nc)
    cleanup(() => jsm.streams.delete(stream).catch(() => {}))
    const f = await folder(yaml, ['meter-1', 'meter-2'])
    const lines: string[] = []
    let gw: GatewayCli = await startGatewayCli(f.config, lines)
    cleanup(async () => {
      gw.child.kill('SIGTERM')
      await until(gw.exited, 15_000)
    })
    const get = (route: string): Promise<Response> => fetch(gw.http + route, { headers: { authorization: `Bearer ${HTTP_TOKEN}` } })

    const N = 400
    const clients = await Promise.all(['meter-1', 'meter-2'].map((id) => mqtt.connectAsync(gw.url, { clientId: id, username: id, password: f.secrets[id], reconnectPeriod: 0 })))
    await Promise.all(
      clients.map(async (c, i) => {
        const id = `meter-${i + 1}`
        for (let n = 1; n <= N; n++) expect(await publishOutcome(c, `ob/${id}/evt/meter/1/reading`, good(id, n), { qos: 1 })).toBe('acked')
        await c.endAsync()
      }),
    )
    const waiting = await forwardOf({ get })
    expect(waiting.targets.js!.backlog.messages).toBe(2 * N)
    expect(waiting.targets.js!.state).not.toBe('up')

    gw.child.kill('SIGTERM')
    const code = await new Promise<number | null>((r) => (gw.child.exitCode !== null ? r(gw.child.exitCode) : gw.child.once('exit', (c) => r(c))))
    expect(code).toBe(0)
    // Between two runs, the CLI sees what waits.
    const status = JSON.parse((await outpost(['forward', 'status', '--json', '--config', f.config])).out) as { target: string; waiting: number }[]
    expect(status).toMatchObject([{ target: 'js', waiting: 2 * N }])

    await proxy.up()
    gw = await startGatewayCli(f.config, lines)
    const done = await forwardUntil({ get }, (v) => v.targets.js!.backlog.messages === 0, 60_000)
    expect(done.targets.js!.forwarded).toBe(2 * N)
    const messages = await streamMessages(nc, jsm, stream)
    for (const id of ['meter-1', 'meter-2']) {
      expect(messages.filter((m) => m.subject === `${root}.${id}.meter.1.reading`).map((m) => m.n), id).toEqual(Array.from({ length: N }, (_, i) => i + 1))
    }
    expect(messages).toHaveLength(2 * N)
    expectNoStackTrace(lines)
  }, 120_000)
})
