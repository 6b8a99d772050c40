// Outside test: the gateway's forward queue (`<dataDir>/forward.db`) is opened by ANOTHER process
// while device processes publish a few thousand events through a gateway process that forwards
// them to NATS JetStream.
// 1. The other process holds the write lock (BEGIN EXCLUSIVE) past the gateway's busy wait
//    (openForwardQueue's, 200 ms: it waits until the gateway said it gave up), then lets it go. The
//    gateway must stay up, say in its log that the forward queue is busy, and afterwards every
//    event must be in JetStream once (by Nats-Msg-Id), the devices' outboxes and the gateway's
//    forward queue empty.
// 2. The other process holds a long read transaction on the (WAL) database: writers are not
//    blocked, so forwarding must complete while it still reads, without a store error.
import path from 'node:path'
import Database from 'better-sqlite3'
import { jetstream, type JetStreamManager } from '@nats-io/jetstream'
import type { NatsConnection } from '@nats-io/transport-node'
import { build } from 'esbuild'
import { describe, expect, it } from 'vitest'
import { createEnvelopeCodec } from '../../runtime/wire/codec.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { jetstreamForward } from '../helpers/jetstream-forward.js'
import { startProcess, type TestProcess } from '../helpers/device-process.js'
import { freePort, until } from '../helpers/wait.js'

const DEVICES = 2
const PER_DEVICE = 2_000
const TOTAL = DEVICES * PER_DEVICE
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

// The other process: opens forward.db with better-sqlite3 and takes the write lock ("write") or
// a read snapshot ("read"); says so on stdout, holds it until a line arrives on stdin, then
// commits, says "released" and exits. argv: <forward.db> <write|read>
const HOLDER = `
const Database = require('better-sqlite3')
const [file, mode] = process.argv.slice(1)
const db = new Database(file, { fileMustExist: true, timeout: 60000 })
const journal = db.pragma('journal_mode', { simple: true })
if (mode === 'write') {
  db.exec('BEGIN EXCLUSIVE')
  console.log('holding write lock, journal ' + journal)
} else {
  db.exec('BEGIN')
  const n = db.prepare('SELECT count(*) FROM queue').pluck().get()
  console.log('holding read transaction, journal ' + journal + ', rows ' + n)
}
const release = () => { db.exec('COMMIT'); db.close(); console.log('released'); process.exit(0) }
process.stdin.once('data', release)
process.stdin.once('end', release)
`

interface Setup {
  dir: string
  stream: string
  jsm: JetStreamManager
  nc: NatsConnection
  gateway: TestProcess
  devices: TestProcess[]
  forwardDb: string
  stored(): Promise<number>
}

describe('forward.db held by another process', () => {
  const cleanup = cleanupAfterEach()

  const setup = async (label: string): Promise<Setup> => {
    const { stream, dir, nc, jsm, forward } = await jetstreamForward(cleanup, { stream: 'FWD_LOCK_', subject: 'fwdlock', dir: `outpost-fwd-lock-${label}-` })
    // Own bundle names: other test files build the same helpers to their own paths, maybe at the same time.
    const outDir = path.resolve('test/e2e/chaos/.build')
    const gatewayScript = path.join(outDir, 'forward-db-locked-gateway.mjs')
    const deviceScript = path.join(outDir, 'forward-db-locked-device.mjs')
    const opts = { bundle: true, platform: 'node', format: 'esm', packages: 'external', logLevel: 'silent' } as const
    await build({ ...opts, entryPoints: ['test/e2e/gateway-kill9-process.ts'], outfile: gatewayScript })
    await build({ ...opts, entryPoints: ['test/e2e/chaos/event-device.ts'], outfile: deviceScript })
    const port = await freePort()
    const gateway = startProcess(gatewayScript, [], { DATA_DIR: path.join(dir, 'gw'), PORT: String(port), FORWARD: JSON.stringify(forward) })
    cleanup(() => gateway.kill())
    await gateway.waitFor('READY', 60_000)
    const devices: TestProcess[] = []
    for (let i = 0; i < DEVICES; i++) {
      const p = startProcess(deviceScript, [path.join(dir, `meter-${i}.db`), `mqtt://127.0.0.1:${port}`, `meter-${i}`, String(PER_DEVICE), '20', '10'], {})
      cleanup(() => p.kill())
      devices.push(p)
    }
    const stored = async (): Promise<number> => (await jsm.streams.info(stream).catch(() => undefined))?.state.messages ?? 0
    return { dir, stream, jsm, nc, gateway, devices, forwardDb: path.join(dir, 'gw', 'forward.db'), stored }
  }

  /** Starts the other process on forward.db; resolves once it holds what it was told to. */
  const hold = async (file: string, mode: 'write' | 'read'): Promise<TestProcess & { line: string }> => {
    const p = startProcess('-e', [HOLDER, file, mode], {})
    cleanup(() => p.kill())
    const line = await p.waitFor('holding', 60_000)
    return Object.assign(p, { line })
  }

  const release = async (p: TestProcess): Promise<void> => {
    p.child.stdin!.end('release\n')
    await p.waitFor('released', 60_000)
    expect((await p.exited).code).toBe(0)
  }

  /** Rows still in the gateway's forward queue, read by a connection of this process. */
  const queued = (file: string): number => {
    const db = new Database(file, { readonly: true, fileMustExist: true, timeout: 10_000 })
    try {
      return db.prepare('SELECT count(*) FROM queue').pluck().get() as number
    } finally {
      db.close()
    }
  }

  /** Every reading of every device is in the stream, and each Nats-Msg-Id once. */
  const checkStream = async (s: Setup): Promise<void> => {
    // Settled: everything arrived, and nothing more comes.
    let last = -1
    for (let i = 0; i < 600; i++) {
      const n = await s.stored()
      if (n === TOTAL && n === last) break
      last = n
      await sleep(200)
    }
    expect(await s.stored()).toBe(TOTAL)
    const ids = new Map<string, number>()
    const seen = new Set<string>()
    const codec = createEnvelopeCodec()
    const consumer = await jetstream(s.nc).consumers.get(s.stream)
    const msgs = await consumer.fetch({ max_messages: TOTAL, expires: 20_000 })
    let read = 0
    for await (const m of msgs) {
      read++
      const id = m.headers?.get('Nats-Msg-Id') ?? ''
      ids.set(id, (ids.get(id) ?? 0) + 1)
      const d = codec.decode(m.data)
      if (d.ok) seen.add(`${d.envelope.src}:${(d.envelope.payload as { n: number }).n}`)
      if (read === TOTAL) break
    }
    expect(read).toBe(TOTAL)
    expect(ids.has('')).toBe(false)
    expect(ids.size).toBe(TOTAL)
    expect([...ids.values()].filter((n) => n !== 1)).toEqual([])
    const missing: string[] = []
    for (let i = 0; i < DEVICES; i++) for (let n = 1; n <= PER_DEVICE; n++) if (!seen.has(`meter-${i}:${n}`)) missing.push(`meter-${i}:${n}`)
    expect(missing.slice(0, 20)).toEqual([])
  }

  const alive = (p: TestProcess): boolean => p.child.exitCode === null && p.child.signalCode === null

  /** The gateway's log lines (pino JSON on stderr) that parse. */
  const logLines = (p: TestProcess): { level: number; msg: string; err?: string; reason?: string }[] =>
    p.lines.flatMap((l) => {
      try {
        return [JSON.parse(l) as { level: number; msg: string; err?: string; reason?: string }]
      } catch {
        return []
      }
    })

  it('a write lock held past the busy wait: the gateway stays up, says the forward queue is busy, and afterwards every event arrives once', async () => {
    const s = await setup('write')
    // Some of the stream through, then the other process takes the write lock.
    for (let i = 0; i < 3000 && (await s.stored()) < TOTAL / 5; i++) await sleep(50)
    const stillComing = (await s.stored()) < TOTAL
    const holder = await hold(s.forwardDb, 'write')
    expect(holder.line).toContain('journal wal')
    // The gateway's commit waits the busy timeout, then gives up and says so (rate limited: once).
    const warned = await s.gateway.waitFor('forward queue cannot be written', 120_000)
    const entry = JSON.parse(warned) as { level: number; err: string; reason: string }
    expect(entry.level).toBeGreaterThanOrEqual(40)
    expect(entry.reason).toBe('store STORE_BUSY')
    expect(entry.err).toMatch(/busy/)
    // Held a while longer (devices keep trying, the pump's removals fail), the gateway still up.
    await sleep(3_000)
    expect(alive(s.gateway)).toBe(true)
    await release(holder)

    // After the lock is gone: the devices' outboxes drain, every event is in JetStream once.
    for (const d of s.devices) await d.waitFor('drained', 240_000)
    await checkStream(s)
    console.log(`write lock: ${stillComing ? 'taken mid-stream' : 'taken after the stream'}; gateway log: ${logLines(s.gateway).map((l) => `[${l.level}] ${l.msg} (${l.err ?? ''})`).join('; ')}`)
    // Nothing stays behind in the gateway's queue (confirmed rows are removed).
    await until(() => queued(s.forwardDb) === 0, 120_000).catch(() => {})
    expect(queued(s.forwardDb)).toBe(0)
    expect(alive(s.gateway)).toBe(true)
    const fatal = logLines(s.gateway).filter((l) => l.level >= 60)
    expect(fatal).toEqual([])
  }, 600_000)

  it('a long read transaction on the WAL database does not stall forwarding', async () => {
    const s = await setup('read')
    for (let i = 0; i < 3000 && (await s.stored()) < TOTAL / 5; i++) await sleep(50)
    const holder = await hold(s.forwardDb, 'read')
    expect(holder.line).toContain('journal wal')
    // While the reader still holds its snapshot: every event is acknowledged and forwarded.
    for (const d of s.devices) await d.waitFor('drained', 240_000)
    await checkStream(s)
    await until(() => queued(s.forwardDb) === 0, 120_000).catch(() => {})
    expect(queued(s.forwardDb)).toBe(0)
    expect(alive(holder)).toBe(true)
    expect(logLines(s.gateway).filter((l) => /forward queue/.test(l.msg))).toEqual([])
    await release(holder)
    expect(alive(s.gateway)).toBe(true)
  }, 600_000)
})
