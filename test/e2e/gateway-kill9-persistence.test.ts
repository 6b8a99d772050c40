// Outside test (issue 13, part D): a gateway process keeping its broker state in broker.db is
// killed with SIGKILL and started again on the same data folder and port, several times. A
// subscriber with a persistent session (clean: false, QoS 1) that was away gets every QoS 1
// message the broker acknowledged before the kill (duplicates allowed, counted), and retained
// `ob/<x>/status` messages are still there. A graceful stop (SIGTERM) keeps everything too.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { build } from 'esbuild'
import mqtt from 'mqtt'
import { describe, expect, it } from 'vitest'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { startProcess, type TestProcess } from '../helpers/device-process.js'
import { freePort, until } from '../helpers/wait.js'

const PER_ROUND = 200

/** The gateway script, built to plain JS once so each restart is quick (next to the other helper builds). */
async function buildGatewayProcess(): Promise<string> {
  const script = path.resolve('test/e2e/chaos/.build/gateway-kill9-process.mjs')
  await build({ entryPoints: ['test/e2e/gateway-kill9-process.ts'], outfile: script, bundle: true, platform: 'node', format: 'esm', packages: 'external', logLevel: 'silent' })
  return script
}

describe('gateway broker state across kill -9', () => {
  const cleanup = cleanupAfterEach()

  /** A gateway process on a data folder and port of its own, started; `start` starts it again there, `gateway` is the one running. */
  const killable = async (env: Record<string, string> = {}): Promise<{ url: string; gateway: TestProcess | undefined; start(): Promise<void> }> => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-gw-kill9-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    const script = await buildGatewayProcess()
    const port = await freePort()
    const g = {
      url: `mqtt://127.0.0.1:${port}`,
      gateway: undefined as TestProcess | undefined,
      async start(): Promise<void> {
        g.gateway = startProcess(script, [], { DATA_DIR: dir, PORT: String(port), ...env })
        await g.gateway.waitFor('READY', 60_000)
      },
    }
    cleanup(() => g.gateway?.kill())
    await g.start()
    return g
  }

  it('keeps queued QoS 1 messages of an offline persistent session and retained statuses across SIGKILLs and a SIGTERM', async () => {
    const g = await killable()
    const { url, start } = g

    // The subscriber's persistent session, then it goes away.
    const first = await mqtt.connectAsync(url, { clientId: 'kept-sub', clean: false, reconnectPeriod: 0 })
    await first.subscribeAsync('data/#', { qos: 1 })
    await first.endAsync()

    const received = new Map<string, number>()
    const expected = new Set<string>()
    const statuses = new Set<string>()
    /**
     * Publishes a round of QoS 1 messages and a retained status while the subscriber is away, and
     * waits until a live witness got them all. aedes acknowledges a QoS 1 publish before it stores
     * it (node_modules/aedes/lib/handlers/publish.js: PUBACK, then broker.publish); it hands a
     * message to live subscribers only after the retained store and the offline queues took it
     * (aedes.js publishFuncsQoS), and the persistence answers once the write is committed. So
     * what the witness got is in broker.db, and what is there must survive the kill.
     */
    const publishRound = async (round: number): Promise<void> => {
      const witness = await mqtt.connectAsync(url, { clientId: `witness-${round}`, reconnectPeriod: 0 })
      const witnessed = new Set<string>()
      witness.on('message', (topic, buf) => witnessed.add(topic.startsWith('ob/') ? topic : buf.toString('utf8')))
      await witness.subscribeAsync([`data/${round}`, `ob/dev-${round}/status`], { qos: 1 })
      const pub = await mqtt.connectAsync(url, { clientId: `pub-${round}`, reconnectPeriod: 0 })
      const bodies: string[] = []
      for (let i = 0; i < PER_ROUND; i++) {
        const body = `${round}-${i}`
        await pub.publishAsync(`data/${round}`, body, { qos: 1 })
        bodies.push(body)
      }
      const status = `ob/dev-${round}/status`
      await pub.publishAsync(status, JSON.stringify({ online: true, round }), { qos: 1, retain: true })
      await pub.endAsync()
      await until(() => witnessed.has(status) && bodies.every((b) => witnessed.has(b)), 60_000)
      await witness.endAsync()
      for (const b of bodies) expected.add(b)
      statuses.add(status)
    }
    /** The subscriber comes back on its session and takes what was kept for it. */
    const drain = async (): Promise<void> => {
      const sub = mqtt.connect(url, { clientId: 'kept-sub', clean: false, reconnectPeriod: 0 })
      sub.on('message', (_t, buf) => {
        const body = buf.toString('utf8')
        received.set(body, (received.get(body) ?? 0) + 1)
      })
      const connack = await new Promise<mqtt.IConnackPacket>((resolve, reject) => {
        sub.once('connect', resolve)
        sub.once('error', reject)
      })
      expect(connack.sessionPresent).toBe(true)
      await until(() => [...expected].every((b) => received.has(b)), 60_000).catch(() => {
        throw new Error(`missing ${[...expected].filter((b) => !received.has(b)).length} of ${expected.size} messages`)
      })
      await sub.endAsync()
    }
    /** A new client subscribes to every status: each retained one comes back. */
    const checkRetained = async (): Promise<void> => {
      const c = await mqtt.connectAsync(url, { clientId: 'status-reader', reconnectPeriod: 0 })
      const seen = new Map<string, unknown>()
      c.on('message', (topic, buf, packet) => {
        // The gateway's own runtime keeps a status too (not JSON); only the test's devices are read.
        if (packet.retain && statuses.has(topic)) seen.set(topic, JSON.parse(buf.toString('utf8')))
      })
      await c.subscribeAsync('ob/+/status', { qos: 1 })
      await until(() => [...statuses].every((t) => seen.has(t)), 30_000).catch(() => {
        throw new Error(`retained statuses missing: ${[...statuses].filter((t) => !seen.has(t)).join(', ')}; gateway said:\n${g.gateway?.lines.join('\n')}`)
      })
      for (const t of statuses) expect(seen.get(t)).toMatchObject({ online: true })
      await c.endAsync()
    }

    for (let round = 0; round < 3; round++) {
      await publishRound(round)
      await g.gateway!.kill('SIGKILL')
      await start()
      await checkRetained()
      await drain()
    }
    // Two rounds queued before one kill, then a graceful stop with more queued.
    await publishRound(3)
    await publishRound(4)
    await g.gateway!.kill('SIGKILL')
    await start()
    await publishRound(5)
    await g.gateway!.kill('SIGTERM')
    expect((await g.gateway!.exited).code).toBe(0)
    await start()
    await checkRetained()
    await drain()

    expect(expected.size).toBe(6 * PER_ROUND)
    for (const body of expected) expect(received.get(body), body).toBeGreaterThanOrEqual(1)
    // Duplicates are allowed (QoS 1 is at least once); nothing arrives that was never sent.
    const duplicates = [...received.values()].reduce((n, c) => n + c - 1, 0)
    expect([...received.keys()].every((b) => expected.has(b))).toBe(true)
    console.log(`kill -9 persistence: ${expected.size} messages, ${duplicates} duplicates`)
  }, 300_000)

  it('has stored every QoS 1 message it acknowledged when it is killed in the middle of a flood', async () => {
    // A device's outbox forgets an event once the broker's PUBACK came: a PUBACK that goes out
    // before the message is in broker.db loses the event for good when the gateway dies then.
    // No bound on the session's queue: the floods are larger than the default's 10,000.
    const g = await killable({ SESSION_MAX_MESSAGES: '0' })
    const { url, start } = g
    const first = await mqtt.connectAsync(url, { clientId: 'flood-sub', clean: false, reconnectPeriod: 0 })
    await first.subscribeAsync('flood/#', { qos: 1 })
    await first.endAsync()

    const acknowledged = new Set<string>()
    const ROUNDS = 8
    for (let round = 0; round < ROUNDS; round++) {
      const pub = mqtt.connect(url, { clientId: `flood-pub-${round}`, reconnectPeriod: 0 })
      pub.on('error', () => {})
      await new Promise((resolve, reject) => {
        pub.once('connect', resolve)
        pub.once('error', reject)
      })
      // Thousands in flight at once; the kill comes while they are being taken.
      let acks = 0
      for (let i = 0; i < 5_000; i++) {
        const body = `${round}-${i}`
        pub.publish(`flood/${round}`, body, { qos: 1 }, (err) => {
          if (err === undefined || err === null) {
            acknowledged.add(body)
            acks++
          }
        })
      }
      await until(() => acks >= 200 + round * 300, 60_000)
      await g.gateway!.kill('SIGKILL')
      pub.end(true)
      await start()
    }
    const received = new Set<string>()
    const back = mqtt.connect(url, { clientId: 'flood-sub', clean: false, reconnectPeriod: 0 })
    cleanup(() => void back.end(true))
    back.on('message', (_t, buf) => received.add(buf.toString('utf8')))
    const missing = (): string[] => [...acknowledged].filter((b) => !received.has(b))
    // Tens of thousands to deliver from the store: on a loaded machine (the whole suite) that takes a while.
    await until(() => missing().length === 0, 150_000).catch(() => {
      throw new Error(`${missing().length} of ${acknowledged.size} acknowledged messages lost, e.g. ${missing().slice(0, 5).join(', ')}`)
    })
    expect(acknowledged.size).toBeGreaterThan(ROUNDS * 200)
  }, 300_000)

  it('sends again, after a SIGKILL, the QoS 1 messages in flight to a connected subscriber that never acknowledged them', async () => {
    const g = await killable()
    const { url, start } = g
    // Connected with a persistent session, it takes every message and acknowledges none.
    const silent = mqtt.connect(url, { clientId: 'silent-sub', clean: false, reconnectPeriod: 0 })
    cleanup(() => void silent.end(true))
    // mqtt.js sends the PUBACK once handleMessage calls back: it never does here (and reads no
    // further packet after the first, which is all the broker needs to keep the rest in flight).
    silent.handleMessage = () => undefined
    await new Promise((resolve, reject) => {
      silent.once('connect', resolve)
      silent.once('error', reject)
    })
    const unacked = new Set<string>()
    silent.on('message', (_t, buf) => unacked.add(buf.toString('utf8')))
    const witness = await mqtt.connectAsync(url, { clientId: 'f-witness', reconnectPeriod: 0 })
    cleanup(() => void witness.end(true))
    const witnessed = new Set<string>()
    witness.on('message', (_t, buf) => witnessed.add(buf.toString('utf8')))
    await witness.subscribeAsync('f/#', { qos: 1 })
    await silent.subscribeAsync('f/#', { qos: 1 })
    const pub = await mqtt.connectAsync(url, { clientId: 'f-pub', reconnectPeriod: 0 })
    const bodies = Array.from({ length: 50 }, (_, i) => `f-${i}`)
    for (const b of bodies) await pub.publishAsync('f/1', b, { qos: 1 })
    await pub.endAsync()
    // Delivered to the witness means stored for the silent session too (see publishRound above).
    await until(() => bodies.every((b) => witnessed.has(b)) && unacked.size > 0, 60_000)
    expect(unacked.has('f-0')).toBe(true)
    witness.end(true)
    await g.gateway!.kill('SIGKILL')
    silent.end(true)
    await start()
    const again = new Map<string, boolean>()
    const back = mqtt.connect(url, { clientId: 'silent-sub', clean: false, reconnectPeriod: 0 })
    cleanup(() => void back.end(true))
    back.on('message', (_t, buf, packet) => again.set(buf.toString('utf8'), packet.dup))
    await until(() => bodies.every((b) => again.has(b)), 60_000).catch(() => {
      throw new Error(`not sent again: ${bodies.filter((b) => !again.has(b)).join(', ')}`)
    })
    expect([...again.keys()].sort()).toEqual([...bodies].sort())
  }, 120_000)
})
