// Outside test (issue 13): a gateway process whose data folder is on a full, read-only or locked
// disk, driven by plain mqtt.js clients. Whatever the disk does, the process stays up and keeps
// serving what needs no writes; a QoS 1 message it could not store gets no PUBACK (the client's
// connection is closed, so it sends it again); the log says so in one line, not one per packet;
// /readyz says not ready while broker.db takes no commits; and every message that was
// acknowledged is still there after a kill -9 and a restart. A second gateway on the same data
// folder, or one on a read-only one, stops with one typed line.
import { execFileSync, spawn } from 'node:child_process'
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { build } from 'esbuild'
import mqtt from 'mqtt'
import { beforeAll, describe, expect, it } from 'vitest'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { outpost } from '../helpers/gateway-cli.js'
import { startProcess, type TestProcess } from '../helpers/device-process.js'
import { mountSmallDisk, type SmallDisk } from '../helpers/small-disk.js'
import { freePort, until } from '../helpers/wait.js'

/** Payload of each flood message: a few of them fill what is left of a 4 MiB disk. */
const PAYLOAD_BYTES = 20 * 1024
/** The log line of a commit of broker.db that failed (gateway/persistence/sqlite-persistence.ts). */
const CANNOT_WRITE = 'broker database cannot be written'
const STILL_CANNOT = 'broker database still cannot be written'

let script: string
beforeAll(async () => {
  // Built to plain JS once, so that each restart is quick (next to the other helper builds).
  script = path.resolve('test/e2e/chaos/.build/gateway-disk-process.mjs')
  await build({ entryPoints: ['test/e2e/gateway-disk-process.ts'], outfile: script, bundle: true, platform: 'node', format: 'esm', packages: 'external', logLevel: 'silent' })
}, 60_000)

interface LogLine {
  level: number
  msg: string
  code?: string
  [field: string]: unknown
}

/** The JSON log lines a gateway process wrote so far. */
const logLines = (p: TestProcess): LogLine[] =>
  p.lines.filter((l) => l.startsWith('{')).flatMap((l) => {
    try {
      return [JSON.parse(l) as LogLine]
    } catch {
      return []
    }
  })

/** A message body: its number, then padding up to PAYLOAD_BYTES. */
const body = (n: number): Buffer => Buffer.concat([Buffer.from(`m-${n}-`), Buffer.alloc(PAYLOAD_BYTES, 97)])
const numberOf = (payload: Buffer): number => Number(payload.subarray(0, 16).toString('latin1').split('-')[1])

/**
 * Publishes QoS 1 and says whether the broker acknowledged it: true on PUBACK, false when the
 * connection closed (or the client failed) first.
 */
function publishAcked(client: mqtt.MqttClient, topic: string, payload: Buffer | string): Promise<boolean> {
  return new Promise((resolve) => {
    if (!client.connected) return resolve(false)
    const closed = (): void => resolve(false)
    client.once('close', closed)
    client.publish(topic, payload, { qos: 1 }, (err) => {
      client.off('close', closed)
      resolve(err === undefined || err === null)
    })
  })
}

/** Connects a plain client; errors are for the test to see in the outcome of what it does, not thrown. */
async function connect(url: string, clientId: string, opts: mqtt.IClientOptions = {}): Promise<mqtt.MqttClient> {
  const c = mqtt.connect(url, { clientId, reconnectPeriod: 0, connectTimeout: 10_000, ...opts })
  c.on('error', () => {})
  await new Promise<void>((resolve, reject) => {
    c.once('connect', () => resolve())
    c.once('close', () => reject(new Error(`${clientId} could not connect`)))
  })
  return c
}

/**
 * An ext4 file system of its own (an image on a loop device), mounted with errors=remount-ro, as
 * a gateway's disk usually is. A tmpfs cannot turn read-only under a process that has files open
 * for writing (the kernel refuses the remount: EBUSY); ext4 does when it meets an error, and
 * `/sys/fs/ext4/<dev>/trigger_fs_error` makes it meet one: from then on every write, through
 * descriptors already open too, fails with EROFS.
 */
interface Ext4Disk {
  readonly dir: string
  turnReadOnly(): void
  dispose(): void
}

function mountExt4(base: string, sizeMiB: number): Ext4Disk {
  const image = path.join(base, 'disk.img')
  const dir = path.join(base, 'disk')
  mkdirSync(dir, { recursive: true })
  execFileSync('truncate', ['-s', `${sizeMiB}M`, image])
  execFileSync('mkfs.ext4', ['-q', '-F', image])
  const loop = execFileSync('losetup', ['-f', '--show', image], { encoding: 'utf8' }).trim()
  try {
    execFileSync('mount', ['-o', 'errors=remount-ro', loop, dir], { stdio: 'ignore' })
  } catch (err) {
    execFileSync('losetup', ['-d', loop])
    throw err
  }
  return {
    dir,
    turnReadOnly: () => writeFileSync(`/sys/fs/ext4/${path.basename(loop)}/trigger_fs_error`, 'outpost disk test: read-only from here on'),
    dispose: () => {
      try {
        execFileSync('umount', [dir], { stdio: 'ignore' })
      } catch {
        execFileSync('umount', ['-l', dir], { stdio: 'ignore' })
      }
      execFileSync('losetup', ['-d', loop])
    },
  }
}

describe('the gateway on a failing disk', () => {
  const cleanup = cleanupAfterEach()

  /** Starts the gateway process on `dir`, MQTT on `port`; returns it and its HTTP address. */
  async function startGatewayProcess(dir: string, port: number): Promise<{ proc: TestProcess; http: string }> {
    const proc = startProcess(script, [], { DATA_DIR: dir, PORT: String(port) })
    cleanup(() => proc.kill())
    const ready = await proc.waitFor('READY', 60_000)
    return { proc, http: ready.split(' ')[1]! }
  }

  /** A mounted tmpfs of `size`, removed after the test. */
  function smallDisk(size: string): SmallDisk {
    const base = mkdtempSync(path.join(tmpdir(), 'outpost-gw-disk-'))
    cleanup(() => rmSync(base, { recursive: true, force: true }))
    const disk = mountSmallDisk(path.join(base, 'disk'), size)
    // These tests are about a real disk filling up or turning read-only: they need root to mount one.
    if (disk === undefined) throw new Error('cannot mount a tmpfs here (the disk tests run as root)')
    cleanup(() => disk.dispose())
    return disk
  }

  /**
   * The subscriber with a persistent session comes back and must get every body in `expected`.
   * It reconnects as a device does: a commit that fails while it takes its messages (its
   * acknowledgements are deletes, and a disk with little room may refuse them) closes its
   * connection. @returns how often each body came, and how many connections it took
   */
  async function drainAll(url: string, clientId: string, expected: Set<number>, gateway: TestProcess): Promise<{ received: Map<number, number>; connections: number }> {
    const received = new Map<number, number>()
    const sub = mqtt.connect(url, { clientId, clean: false, reconnectPeriod: 200 })
    sub.on('error', () => {})
    cleanup(() => void sub.end(true))
    sub.on('message', (_t, payload) => received.set(numberOf(payload), (received.get(numberOf(payload)) ?? 0) + 1))
    let connections = 0
    const sessions: boolean[] = []
    sub.on('connect', (connack) => {
      connections++
      sessions.push(connack.sessionPresent)
    })
    const missing = (): number[] => [...expected].filter((n) => !received.has(n))
    await until(() => missing().length === 0, 60_000).catch(() => {
      throw new Error(`${missing().length} of ${expected.size} acknowledged messages lost, e.g. ${missing().slice(0, 5).join(', ')}; ${connections} connections; gateway said:\n${gateway.lines.join('\n')}`)
    })
    // Every connection found the session that was kept.
    expect(sessions.every((present) => present)).toBe(true)
    await sub.endAsync()
    return { received, connections }
  }

  it('on a full disk: acknowledges only what it stored, stays up, logs once, is not ready; recovers when space returns, and loses nothing acknowledged across kill -9', async () => {
    const disk = smallDisk('8m')
    // A filler to delete later, so that space comes back: more than broker.db's write-ahead log
    // can hold by then. Until a checkpoint, the broker's state lives in that log (SQLite copies it
    // into broker.db every 1,000 pages, 4 MiB), and the checkpoint needs room for those pages in
    // broker.db: with less room than that, every commit still fails once the log fills the room
    // again, acknowledgements of deliveries included, and a subscriber coming back gets nothing.
    const filler = path.join(disk.dir, 'fill')
    writeFileSync(filler, Buffer.alloc(5 * 1024 * 1024, 1))
    const dataDir = path.join(disk.dir, 'data')
    const port = await freePort()
    const url = `mqtt://127.0.0.1:${port}`
    let { proc: gateway, http } = await startGatewayProcess(dataDir, port)

    const away = await connect(url, 'kept-sub', { clean: false })
    await away.subscribeAsync('data/#', { qos: 1 })
    await away.endAsync()

    // The flood, one message at a time, until the disk refuses: each PUBACK is recorded.
    const acked = new Set<number>()
    const refused = new Set<number>()
    let next = 0
    let pub = await connect(url, 'flood-pub')
    while (refused.size === 0 && next < 1_000) {
      const n = next++
      ;(await publishAcked(pub, 'data/flood', body(n)) ? acked : refused).add(n)
    }
    expect(refused.size, 'the disk never filled up').toBe(1)
    expect(acked.size).toBeGreaterThan(10)
    // The message that could not be stored: no PUBACK, the connection was closed.
    expect(pub.connected).toBe(false)
    pub.end(true)

    // Many publishers at once on the full disk: each is refused, and the log does not grow by a line each.
    const many = await Promise.all(Array.from({ length: 20 }, (_, i) => connect(url, `many-${i}`)))
    const manyAcked = await Promise.all(many.map((c, i) => publishAcked(c, 'data/many', body(10_000 + i))))
    many.forEach((c, i) => (manyAcked[i] ? acked : refused).add(10_000 + i))
    for (const c of many) c.end(true)
    expect(manyAcked.filter((a) => !a).length).toBeGreaterThanOrEqual(15)
    // And again, through the same publisher coming back, as a device's outbox does.
    for (let i = 0; i < 3; i++) {
      pub = await connect(url, 'flood-pub')
      const n = next++
      ;(await publishAcked(pub, 'data/flood', body(n)) ? acked : refused).add(n)
      pub.end(true)
    }

    // The process is up and serves what needs no writes: a new client, QoS 0 both ways.
    expect(gateway.child.exitCode).toBe(null)
    const fresh = await connect(url, 'fresh')
    const heard = new Promise<string>((resolve) => fresh.once('message', (_t, p) => resolve(p.toString())))
    await fresh.subscribeAsync('plain/q0', { qos: 0 })
    await fresh.publishAsync('plain/q0', 'still here', { qos: 0 })
    expect(await heard).toBe('still here')
    await fresh.endAsync()

    // The log: one line that names the code, not one per refused packet, and no stack.
    const failures = logLines(gateway).filter((l) => l.msg.includes(CANNOT_WRITE) || l.msg.includes(STILL_CANNOT))
    expect(failures, JSON.stringify(failures)).toHaveLength(1)
    expect(failures[0]).toMatchObject({ level: 50, code: 'STORE_FULL' })
    expect(failures[0]!.msg).toMatch(/^STORE_FULL: broker database cannot be written/)
    expect(gateway.lines.some((l) => /^\s+at /.test(l))).toBe(false)

    // Health: alive; readiness: not, while broker.db takes no commits.
    expect((await fetch(`${http}/healthz`)).status).toBe(200)
    const notReady = await fetch(`${http}/readyz`)
    expect(notReady.status).toBe(503)
    expect(await notReady.json()).toMatchObject({ ready: false, notReady: ['database'] })

    // Space comes back: publishes are stored and acknowledged again, and the gateway is ready.
    rmSync(filler)
    pub = await connect(url, 'flood-pub')
    const after: number[] = []
    for (let i = 0; i < 5; i++) {
      const n = next++
      expect(await publishAcked(pub, 'data/flood', body(n)), `message ${n} after space came back`).toBe(true)
      acked.add(n)
      after.push(n)
    }
    await pub.endAsync()
    const ready = await fetch(`${http}/readyz`)
    expect(ready.status).toBe(200)
    expect(logLines(gateway).some((l) => l.msg === 'broker database takes writes again' && l.code === 'STORE_FULL')).toBe(true)

    // kill -9 and a restart on the same folder: every acknowledged message reaches the subscriber.
    await gateway.kill('SIGKILL')
    ;({ proc: gateway, http } = await startGatewayProcess(dataDir, port))
    const { received, connections } = await drainAll(url, 'kept-sub', acked, gateway)
    const duplicates = [...received.values()].reduce((s, c) => s + c - 1, 0)
    const failedAfterRestart = logLines(gateway).filter((l) => l.msg.includes(CANNOT_WRITE)).map((l) => l.code)
    console.log(
      `full disk: ${acked.size} acknowledged (${after.length} after space came back), ${refused.size} refused; after kill -9: ${received.size} received, ${duplicates} duplicates, ${connections} connections of the subscriber, failed commits logged: ${failedAfterRestart.join(', ') || 'none'}`,
    )
  }, 180_000)

  it('on a disk that turns read-only while it runs: acknowledges nothing more, stays up, logs once, is not ready; nothing acknowledged is lost', async () => {
    const base = mkdtempSync(path.join(tmpdir(), 'outpost-gw-ro-'))
    cleanup(() => rmSync(base, { recursive: true, force: true }))
    const disk = mountExt4(base, 32)
    cleanup(() => disk.dispose())
    const dataDir = path.join(disk.dir, 'data')
    const port = await freePort()
    const url = `mqtt://127.0.0.1:${port}`
    let { proc: gateway, http } = await startGatewayProcess(dataDir, port)
    const away = await connect(url, 'ro-sub', { clean: false })
    await away.subscribeAsync('data/#', { qos: 1 })
    await away.endAsync()
    const acked = new Set<number>()
    let pub = await connect(url, 'ro-pub')
    for (let n = 0; n < 5; n++) {
      expect(await publishAcked(pub, 'data/ro', body(n))).toBe(true)
      acked.add(n)
    }

    disk.turnReadOnly()
    // Each publish now: no PUBACK, the connection closed; the publisher comes back and tries again.
    const refused: number[] = []
    for (let n = 5; n < 10; n++) {
      if (!pub.connected) pub = await connect(url, 'ro-pub')
      expect(await publishAcked(pub, 'data/ro', body(n)), `message ${n} on the read-only disk`).toBe(false)
      refused.push(n)
    }
    pub.end(true)

    // Up, and serving what needs no writes.
    expect(gateway.child.exitCode).toBe(null)
    const fresh = await connect(url, 'ro-fresh')
    const heard = new Promise<string>((resolve) => fresh.once('message', (_t, p) => resolve(p.toString())))
    await fresh.subscribeAsync('plain/q0', { qos: 0 })
    await fresh.publishAsync('plain/q0', 'read-only but here', { qos: 0 })
    expect(await heard).toBe('read-only but here')
    await fresh.endAsync()
    const failures = logLines(gateway).filter((l) => l.msg.includes(CANNOT_WRITE))
    expect(failures, JSON.stringify(failures)).toHaveLength(1)
    // ext4 after an error (emergency_ro since Linux 6.x): SQLite sees an I/O error and the access
    // checks still find the folder writable; creating a file beside broker.db says EROFS.
    expect(failures[0]!.level).toBe(50)
    expect(failures[0]!.code, JSON.stringify(failures[0])).toBe('STORE_READ_ONLY')
    expect(gateway.lines.some((l) => /^\s+at /.test(l))).toBe(false)
    expect((await fetch(`${http}/healthz`)).status).toBe(200)
    const notReady = await fetch(`${http}/readyz`)
    expect(notReady.status).toBe(503)
    expect(await notReady.json()).toMatchObject({ ready: false, notReady: ['database'] })

    // kill -9. A gateway started on the read-only disk as a user does stops with one line.
    await gateway.kill('SIGKILL')
    const config = path.join(base, 'gateway.yaml')
    writeFileSync(config, `dataDir: ${JSON.stringify(dataDir)}\nmqtt: { port: ${await freePort()} }\nhttp: { port: 0 }\n`)
    const cli = await outpost(['gateway', '--config', config], {}, 30_000)
    expect(cli.err.trim().split('\n'), cli.err).toHaveLength(1)
    expect(cli.err.trim()).toMatch(/^outpost: STORE_READ_ONLY: /)
    expect(cli.code).toBe(1)

    // The data folder copied to a good disk, as an operator would: every acknowledged message is
    // there. (Unmounting the failed file system instead drops what the kernel had not yet written
    // to it, like a power cut: broker.db commits with synchronous NORMAL, which syncs at checkpoints only.)
    const copy = path.join(base, 'copy')
    cpSync(dataDir, copy, { recursive: true })
    ;({ proc: gateway, http } = await startGatewayProcess(copy, port))
    const { received } = await drainAll(url, 'ro-sub', acked, gateway)
    expect((await fetch(`${http}/readyz`)).status).toBe(200)
    console.log(`read-only disk: ${acked.size} acknowledged before, ${refused.length} refused after; ${received.size} received from the copy after kill -9 (${[...received.keys()].filter((n) => !acked.has(n)).length} of them never acknowledged)`)
  }, 120_000)

  it('on a database locked by another process: acknowledges only what it stored, survives, and loses nothing acknowledged across kill -9', async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'outpost-gw-locked-'))
    cleanup(() => rmSync(dataDir, { recursive: true, force: true }))
    const port = await freePort()
    const url = `mqtt://127.0.0.1:${port}`
    let { proc: gateway, http } = await startGatewayProcess(dataDir, port)
    const away = await connect(url, 'locked-sub', { clean: false })
    await away.subscribeAsync('data/#', { qos: 1 })
    await away.endAsync()
    const acked = new Set<number>()
    const refused = new Set<number>()
    let pub = await connect(url, 'locked-pub')
    for (let n = 0; n < 5; n++) {
      expect(await publishAcked(pub, 'data/locked', body(n))).toBe(true)
      acked.add(n)
    }

    // Another process takes broker.db's write lock for 7 s: longer than the gateway's busy wait (5 s).
    const locker = spawn(
      process.execPath,
      ['-e', `const D = require('better-sqlite3'); const db = new D(process.argv[1]); db.exec('BEGIN EXCLUSIVE'); console.log('LOCKED'); setTimeout(() => { db.exec('COMMIT'); db.close(); console.log('UNLOCKED') }, 7000)`, path.join(dataDir, 'broker.db')],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    )
    const lockerExited = new Promise<number | null>((resolve) => locker.once('exit', resolve))
    cleanup(async () => {
      locker.kill('SIGKILL')
      await lockerExited
    })
    let lockerOut = ''
    locker.stdout!.on('data', (c: Buffer) => (lockerOut += c.toString()))
    await until(() => lockerOut.includes('LOCKED'), 10_000)

    // Publishes while it holds the lock: each acknowledged only once stored, or not at all.
    const during = await Promise.all([5, 6, 7].map(async (n) => [n, await publishAcked(pub, 'data/locked', body(n))] as const))
    for (const [n, ok] of during) (ok ? acked : refused).add(n)
    expect(await lockerExited).toBe(0)
    expect(lockerOut).toContain('UNLOCKED')
    expect(gateway.child.exitCode).toBe(null)

    // The lock is gone: publishes are stored and acknowledged again (on a new connection if the old one was closed).
    if (!pub.connected) pub = await connect(url, 'locked-pub')
    for (let n = 8; n < 12; n++) {
      expect(await publishAcked(pub, 'data/locked', body(n)), `message ${n} after the lock`).toBe(true)
      acked.add(n)
    }
    await pub.endAsync()
    expect((await fetch(`${http}/readyz`)).status).toBe(200)
    const failures = logLines(gateway).filter((l) => l.msg.includes(CANNOT_WRITE) || l.msg.includes(STILL_CANNOT))
    // A lock held past the busy wait is STORE_BUSY, said once.
    expect(failures.length).toBeLessThanOrEqual(1)
    if (refused.size > 0) expect(failures[0]).toMatchObject({ code: 'STORE_BUSY' })
    expect(gateway.lines.some((l) => /^\s+at /.test(l))).toBe(false)

    await gateway.kill('SIGKILL')
    ;({ proc: gateway } = await startGatewayProcess(dataDir, port))
    await drainAll(url, 'locked-sub', acked, gateway)
    console.log(`locked database: ${acked.size} acknowledged, ${refused.size} refused during the lock (${[...refused].join(', ') || 'none'})`)
  }, 120_000)

  it('a second gateway on the same data folder stops with one STORE_IN_USE line; the first goes on', async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'outpost-gw-inuse-'))
    cleanup(() => rmSync(dataDir, { recursive: true, force: true }))
    const port = await freePort()
    const { proc: first } = await startGatewayProcess(dataDir, port)
    const config = path.join(dataDir, 'second.yaml')
    writeFileSync(config, `dataDir: ${JSON.stringify(dataDir)}\nmqtt: { port: ${await freePort()} }\nhttp: { port: 0 }\n`)
    const r = await outpost(['gateway', '--config', config], {}, 30_000)
    expect(r.code).toBe(1)
    const lines = r.err.trim().split('\n')
    expect(lines, r.err).toHaveLength(1)
    expect(lines[0]).toMatch(new RegExp(`^outpost: STORE_IN_USE: gateway database .*gateway\\.db is in use by another gateway \\(pid ${first.child.pid}\\) on this data folder; stop it first, or give this one another dataDir`))
    expect(first.child.exitCode).toBe(null)
    const c = await connect(`mqtt://127.0.0.1:${port}`, 'after-second')
    expect(await publishAcked(c, 'data/x', 'still serving')).toBe(true)
    await c.endAsync()
  }, 60_000)

  it('a gateway started on a read-only data folder stops with one STORE_READ_ONLY line, exit code 1', async () => {
    const disk = smallDisk('8m')
    const dataDir = path.join(disk.dir, 'data')
    // A gateway ran there once (its databases are there), then the disk became read-only.
    const { proc } = await startGatewayProcess(dataDir, await freePort())
    await proc.kill('SIGTERM')
    expect((await proc.exited).code).toBe(0)
    disk.readOnly()
    const config = path.join(path.dirname(disk.dir), 'gateway.yaml')
    writeFileSync(config, `dataDir: ${JSON.stringify(dataDir)}\nmqtt: { port: ${await freePort()} }\nhttp: { port: 0 }\n`)
    const r = await outpost(['gateway', '--config', config], {}, 30_000)
    const lines = r.err.trim().split('\n')
    expect(lines, r.err).toHaveLength(1)
    expect(lines[0]).toMatch(/^outpost: STORE_READ_ONLY: .*gateway\.db.* cannot be written/)
    expect(r.code).toBe(1)
  }, 60_000)
})
