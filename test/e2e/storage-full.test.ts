// A device whose disk fills up while it runs: it keeps serving what needs no new writes, answers
// STORE_FULL for what does, survives its timers (schedule, outbox) failing to write, and goes on
// once there is space again, with nothing it had committed lost. On a small tmpfs where the
// machine lets the test mount one (and there also: a database on a full disk is not moved aside
// at open); otherwise the database is bounded with SQLite's max_page_count.
import { mkdtempSync, readdirSync, rmSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Decoder } from 'cbor-x'
import mqtt from 'mqtt'
import * as v from 'valibot'
import { describe, expect, it } from 'vitest'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createRuntime, defineContract, defineService, ErrorCode, isOutpostError } from '../../runtime/index.js'
import { createSqliteInbox, createSqliteOutbox, createSqliteQueueStore, createSqliteStateStore, openDeviceDatabase } from '../../runtime/stores/sqlite/index.js'
import { freshAedes } from '../helpers/aedes.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { fillDisk, mountSmallDisk } from '../helpers/small-disk.js'
import { until } from '../helpers/wait.js'

const vault = defineContract({
  name: 'vault',
  version: '1',
  commands: {
    /** Needs no new writes of its own. */
    count: { payload: v.object({}), result: v.object({ blobs: v.number() }) },
    /** Writes a blob of `bytes` and emits `written`. */
    put: { payload: v.object({ n: v.number(), bytes: v.number() }), result: v.object({ n: v.number() }) },
  },
  events: { written: v.object({ n: v.number() }), tick: v.object({ at: v.number() }) },
})

const vaultService = defineService(vault, {
  // A schedule writes its last occurrence and emits through the outbox, from a timer.
  schedules: (s) => ({ ticking: s.every(100, 'tick', (o) => ({ at: o.at })) }),
  commands: {
    count: (_p, ctx) => ({ blobs: ctx.state.list('blob-').length }),
    put: async ({ n, bytes }, ctx) => {
      ctx.state.set(`blob-${n}`, new Uint8Array(bytes).fill(n % 251))
      await ctx.emit('written', { n })
      return { n }
    },
  },
})


describe('a device on a full disk', () => {
  const cleanup = cleanupAfterEach()

  it('serves what needs no writes, answers STORE_FULL for what does, and recovers with nothing committed lost', async () => {
    const base = mkdtempSync(path.join(tmpdir(), 'outpost-full-'))
    cleanup(() => rmSync(base, { recursive: true, force: true }))
    const disk = mountSmallDisk(path.join(base, 'disk'), '16m')
    if (disk !== undefined) cleanup(() => disk.dispose())
    const dir = disk?.dir ?? base
    const file = path.join(dir, 'vault-1.db')

    const broker = await freshAedes()
    cleanup(() => broker.close())
    const database = openDeviceDatabase({ path: file })
    cleanup(() => database.close())
    const device = createRuntime({
      bridge: createMqttBridge({ url: broker.url, deviceId: 'vault-1' }),
      services: [vaultService],
      stateStore: createSqliteStateStore(database),
      queueStore: createSqliteQueueStore(database),
      outbox: createSqliteOutbox(database),
      inbox: createSqliteInbox(database),
    })
    await device.start()
    cleanup(() => device.stop({ drainMs: 200 }))
    const caller = createRuntime({ bridge: createMqttBridge({ url: broker.url, deviceId: 'vault-caller' }), services: [] })
    await caller.start()
    cleanup(() => caller.stop({ drainMs: 100 }))
    const listener = await mqtt.connectAsync(broker.url, { clientId: 'vault-listener' })
    cleanup(() => listener.endAsync())
    const dec = new Decoder({ useRecords: false, mapsAsObjects: true })
    const written = new Set<number>()
    listener.on('message', (_t, buf) => written.add(((dec.decode(buf) as unknown[])[16] as { n: number }).n))
    await listener.subscribeAsync('ob/vault-1/evt/vault/1/written', { qos: 1 })
    const client = caller.client(vault)
    const call = async <T>(f: () => Promise<T>): Promise<T> => {
      // The caller may not know the device yet right after start: try again shortly.
      for (let i = 0; ; i++) {
        try {
          return await f()
        } catch (err) {
          if (i > 50 || !isOutpostError(err) || (err.code !== ErrorCode.NO_HANDLER && err.code !== ErrorCode.SERVICE_UNREACHABLE)) throw err
          await new Promise((r) => setTimeout(r, 100))
        }
      }
    }

    // Before: three blobs committed, their events delivered.
    for (const n of [1, 2, 3]) expect(await call(() => client.put({ n, bytes: 64 * 1024 }))).toEqual({ n })
    await until(() => [1, 2, 3].every((n) => written.has(n)), 15_000)

    // The disk fills up.
    let filler: string | undefined
    if (disk !== undefined) filler = fillDisk(path.join(dir, 'filler'))
    else database.db.pragma(`max_page_count = ${database.db.pragma('page_count', { simple: true }) as number}`)

    // What needs writing is refused with STORE_FULL; what does not is still served.
    let refused: unknown
    await client.put({ n: 4, bytes: 64 * 1024 }).catch((err: unknown) => (refused = err))
    expect(isOutpostError(refused, ErrorCode.STORE_FULL)).toBe(true)
    // What crossed the wire says what happened, not where the device keeps its database.
    const wire = JSON.stringify({ message: (refused as Error).message, details: (refused as { details?: unknown }).details })
    expect(wire).toContain('full')
    expect(wire).not.toContain(base)
    expect(wire).not.toContain('vault-1.db')
    expect(await client.count({})).toEqual({ blobs: 3 })
    // Timers kept running through failing writes (a schedule every 100 ms): the runtime is alive.
    const fired = device.stats().schedules.fired
    await until(() => device.stats().schedules.fired > fired + 5, 10_000)

    // Space comes back: writing works again, and nothing committed before was lost.
    if (filler !== undefined) rmSync(filler)
    else database.db.pragma('max_page_count = 1073741823')
    expect(await call(() => client.put({ n: 5, bytes: 64 * 1024 }))).toEqual({ n: 5 })
    expect(await client.count({})).toEqual({ blobs: 4 })
    await until(() => written.has(5), 15_000)
    expect([1, 2, 3, 5].every((n) => written.has(n))).toBe(true)
  }, 60_000)

  it('leaves a database on a full disk where it is at open, with STORE_FULL (where a small disk can be mounted)', async () => {
    const base = mkdtempSync(path.join(tmpdir(), 'outpost-full-open-'))
    cleanup(() => rmSync(base, { recursive: true, force: true }))
    const disk = mountSmallDisk(path.join(base, 'disk'), '2m')
    // Without a disk of its own the test cannot fill one; it checks the same on a full database.
    const dir = disk?.dir ?? base
    if (disk !== undefined) cleanup(() => disk.dispose())
    const file = path.join(dir, 'device.db')
    const first = openDeviceDatabase({ path: file })
    first.db.exec('CREATE TABLE keep (v BLOB)')
    first.db.prepare('INSERT INTO keep VALUES (?)').run(Buffer.alloc(100_000, 7))
    first.close()
    let err: unknown
    if (disk !== undefined) {
      fillDisk(path.join(dir, 'filler'))
      try {
        openDeviceDatabase({ path: file }).close()
      } catch (e) {
        err = e
      }
      expect(isOutpostError(err, ErrorCode.STORE_FULL)).toBe(true)
    } else {
      const d = openDeviceDatabase({ path: file })
      d.db.pragma(`max_page_count = ${d.db.pragma('page_count', { simple: true }) as number}`)
      try {
        createSqliteStateStore(d).set('s', 'big', Buffer.alloc(100_000, 8))
      } catch (e) {
        err = e
      }
      d.close()
      expect(isOutpostError(err, ErrorCode.STORE_FULL)).toBe(true)
    }
    expect(existsSync(file)).toBe(true)
    expect(readdirSync(dir).filter((f) => f.includes('corrupt'))).toEqual([])
  }, 30_000)
})
