// A command the broker delivers again is answered with the very bytes of its first reply, read
// from the device's SQLite inbox: watched by a plain mqtt.js client on a real broker (aedes).
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import mqtt, { type MqttClient } from 'mqtt'
import { describe, expect, it } from 'vitest'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createEnvelopeCodec, createRuntime, createTopics, ENVELOPE_VERSION, type Envelope, type Runtime } from '../../runtime/index.js'
import { createSqliteInbox, MIGRATIONS, openDeviceDatabase, type DeviceDatabase } from '../../runtime/stores/sqlite/index.js'
import { counterService, type Observed } from '../fixtures/services.js'
import { freshAedes } from '../helpers/aedes.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { until } from '../helpers/wait.js'

const codec = createEnvelopeCodec()
const topics = createTopics()

const command = (id: string): Envelope => ({
  v: ENVELOPE_VERSION, kind: 'command', id, src: 'probe', inst: 'p', at: Date.now(), service: 'counter', version: '1', name: 'add',
  target: 'dev-a', replyTo: 'probe', deadline: Date.now() + 30_000, payload: { deviceId: 'x', reading: 1, ts: 1 },
})

describe('a redelivered command over a real broker', () => {
  const cleanup = cleanupAfterEach()

  async function setup() {
    const broker = await freshAedes()
    cleanup(() => broker.close())
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-inbox-frame-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    const file = path.join(dir, 'device.db')
    const seen: Observed = { executions: 0, slowAborted: 0, events: [] }

    /** Starts the device on the database file (opened with `migrations` when given). */
    const boot = async (): Promise<{ rt: Runtime; d: DeviceDatabase; stop(): Promise<void> }> => {
      const d = openDeviceDatabase({ path: file })
      const rt = createRuntime({ bridge: createMqttBridge({ url: broker.url, deviceId: 'dev-a' }), services: [counterService(seen)], inbox: createSqliteInbox(d) })
      await rt.start()
      let stopped = false
      const stop = async (): Promise<void> => {
        if (stopped) return
        stopped = true
        await rt.stop({ drainMs: 200 })
        d.close()
      }
      cleanup(stop)
      return { rt, d, stop }
    }

    // The caller: a plain MQTT client that writes command frames and keeps the reply bytes.
    const probe: MqttClient = await mqtt.connectAsync(broker.url, { clientId: 'probe', reconnectPeriod: 0 })
    cleanup(() => probe.endAsync())
    const replies: { topic: string; bytes: Buffer }[] = []
    probe.on('message', (topic, payload) => void replies.push({ topic, bytes: Buffer.from(payload) }))
    await probe.subscribeAsync(topics.replyFilter('probe'), { qos: 1 })
    const send = async (cmd: Envelope, dup = false): Promise<void> => {
      await probe.publishAsync(topics.topicOf(cmd), Buffer.from(codec.encode(cmd)), { qos: 1, dup })
    }
    return { file, seen, boot, replies, send }
  }

  const decoded = (bytes: Buffer): Envelope => {
    const r = codec.decode(bytes)
    if (!r.ok) throw r.error
    return r.envelope
  }

  it('gets the same reply bytes again, from the inbox, and the handler ran once (also after a restart)', async () => {
    const { seen, boot, replies, send } = await setup()
    const first = await boot()
    const cmd = command('CMD-FRAME-1')

    await send(cmd)
    await until(() => replies.length === 1)
    const reply = decoded(replies[0]!.bytes)
    expect(reply).toMatchObject({ kind: 'reply', corr: 'CMD-FRAME-1', src: 'dev-a', payload: { ok: true, n: 1 } })
    expect(replies[0]!.topic).toBe('ob/dev-a/rep/probe')
    // What the inbox keeps is the frame that went out and its topic, not a value to encode again.
    // Kept under the sender and the id (a repeat is the same sender's id).
    const row = first.d.db.prepare('SELECT topic, reply FROM inbox WHERE id = ?').get('probe/CMD-FRAME-1') as { topic: string; reply: Buffer }
    expect(row.topic).toBe(replies[0]!.topic)
    expect(row.reply.equals(replies[0]!.bytes)).toBe(true)

    await send(cmd, true) // the same command again, as a broker redelivers it
    await until(() => replies.length === 2)
    expect(replies[1]!.topic).toBe(replies[0]!.topic)
    expect(replies[1]!.bytes.equals(replies[0]!.bytes)).toBe(true)
    expect(seen.executions).toBe(1)

    // After a restart the reply comes from the database file, still byte for byte.
    await first.stop()
    await boot()
    await send(cmd, true)
    await until(() => replies.length === 3)
    expect(replies[2]!.topic).toBe(replies[0]!.topic)
    expect(replies[2]!.bytes.equals(replies[0]!.bytes)).toBe(true)
    expect(seen.executions).toBe(1)

    // A new command id runs: the inbox tells repeats from new work.
    await send(command('CMD-FRAME-2'))
    await until(() => replies.length === 4)
    expect(decoded(replies[3]!.bytes)).toMatchObject({ corr: 'CMD-FRAME-2', payload: { ok: true, n: 1 } })
    expect(seen.executions).toBe(2)
  })

  it('answers a repeat from a reply stored by the schema before v10 (an encoded envelope, no topic) without running it', async () => {
    const { file, seen, boot, replies, send } = await setup()
    // A database as the previous version left it: schema v9, a command answered, its reply
    // kept as the encoded envelope (the statement that version ran).
    const v9 = MIGRATIONS.filter((m) => m.version <= 9)
    expect(v9.at(-1)!.version).toBe(9)
    const old = openDeviceDatabase({ path: file, migrations: v9 })
    expect(old.version).toBe(9)
    const stored: Envelope = { v: ENVELOPE_VERSION, kind: 'reply', id: 'OLDREPLY000000000000000001', src: 'dev-a', inst: 'gone', at: 1_700_000_000_000, corr: 'CMD-OLD-1', replyTo: 'probe', payload: { ok: true, n: 41 } }
    old.db.prepare('INSERT INTO inbox (id, instance, reply, at) VALUES (?, ?, ?, ?)').run('CMD-OLD-1', 'gone', codec.encode(stored), Date.now())
    old.close()

    const dev = await boot()
    expect(dev.d.version).toBe(MIGRATIONS.at(-1)!.version)
    await send(command('CMD-OLD-1'), true)
    await until(() => replies.length === 1)
    expect(replies[0]!.topic).toBe('ob/dev-a/rep/probe')
    expect(decoded(replies[0]!.bytes)).toEqual(stored)
    expect(replies[0]!.bytes.equals(Buffer.from(codec.encode(stored)))).toBe(true)
    expect(seen.executions).toBe(0)
  })
})
