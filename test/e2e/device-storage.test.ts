// The thermo device (devices/thermo/main.ts, as its bundle runs it) against storage that is not
// simply there for it: a database another process holds locked, a second process for the same
// device, a read-only folder, a database of a newer schema, another process writing for longer
// than the busy wait. Storage errors are not corruption: the file stays where it is, the device
// says what is wrong in one line, and a device that runs survives a busy database.
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import Database from 'better-sqlite3'
import mqtt from 'mqtt'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { MqttBroker } from '../../gateway/broker/mqtt-broker.js'
import { createSqliteQueueStore, MIGRATIONS, openDeviceDatabase } from '../../runtime/stores/sqlite/index.js'
import { freshAedes } from '../helpers/aedes.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { startProcess, type TestProcess } from '../helpers/device-process.js'
import { buildHelperProcess } from '../helpers/processes.js'
import { readOnlyFolder } from '../helpers/small-disk.js'
import { until } from '../helpers/wait.js'

const JOBS = 176

/** A device database with `JOBS` jobs waiting in a queue the device does not run. */
function seed(file: string): void {
  mkdirSync(path.dirname(file), { recursive: true })
  const d = openDeviceDatabase({ path: file })
  const store = createSqliteQueueStore(d)
  store.enqueueMany(Array.from({ length: JOBS }, (_, n) => ({ queue: 'lab/work', payload: { n } })), Date.now())
  d.close()
}

/** Jobs of the seeded queue in the file, read without changing it (the device adds sampling jobs of its own once it runs). */
function jobsIn(file: string): number {
  const db = new Database(file, { readonly: true, fileMustExist: true })
  try {
    return db.prepare("SELECT COUNT(*) FROM jobs WHERE queue = 'lab/work'").pluck().get() as number
  } finally {
    db.close()
  }
}

/** The JSON log lines of a process (other lines left out). */
const logOf = (p: TestProcess): Record<string, unknown>[] =>
  p.lines.flatMap((l) => {
    try {
      return [JSON.parse(l) as Record<string, unknown>]
    } catch {
      return []
    }
  })

describe('a device and its database', () => {
  const cleanup = cleanupAfterEach()
  let thermo: string
  let holder: string
  let broker: MqttBroker
  let base: string
  let n = 0
  beforeAll(async () => {
    ;[thermo, holder] = await Promise.all([buildHelperProcess('thermo-device'), buildHelperProcess('db-holder')])
    broker = await freshAedes()
    base = mkdtempSync(path.join(tmpdir(), 'outpost-device-storage-'))
  }, 60_000)
  afterAll(async () => {
    await broker.close()
    rmSync(base, { recursive: true, force: true })
  })

  /** A fresh data folder and device id for one test. */
  const fresh = (): { dataDir: string; id: string; file: string } => {
    const id = `thermo-st-${process.pid}-${++n}`
    const dataDir = path.join(base, `data-${n}`)
    return { dataDir, id, file: path.join(dataDir, `${id}.db`) }
  }
  const device = (dataDir: string, id: string, env: Record<string, string> = {}, spawnAs: { uid?: number; gid?: number } = {}): TestProcess => {
    const p = startProcess(thermo, [], { OUTPOST_DATA_DIR: dataDir, OUTPOST_DEVICE_ID: id, OUTPOST_MQTT_URL: broker.url, OUTPOST_SAMPLE_MS: '200', OUTPOST_LOG_FORMAT: 'json', ...env }, spawnAs)
    cleanup(() => p.kill())
    return p
  }
  const hold = async (file: string, mode: 'exclusive' | 'writer'): Promise<TestProcess> => {
    const p = startProcess(holder, [file, mode], {})
    cleanup(() => p.kill())
    await p.waitFor('held')
    return p
  }
  /** The process ended with exit code 1 and said `code` in one line, with no stack trace. */
  const endedWith = async (p: TestProcess, code: string): Promise<string> => {
    const { code: exit } = await p.exited
    expect(exit).toBe(1)
    expect(p.lines.some((l) => /^\s+at /.test(l))).toBe(false)
    const said = p.lines.filter((l) => l.includes(code))
    expect(said).toHaveLength(1)
    return said[0]!
  }

  it('leaves a database another process holds locked where it is, and says so in one line (STORE_LOCKED)', async () => {
    const { dataDir, id, file } = fresh()
    seed(file)
    const other = await hold(file, 'exclusive')
    const dev = device(dataDir, id)
    const line = await endedWith(dev, 'STORE_LOCKED')
    expect(line).toContain(file)
    // Nothing was moved aside, and every job is still there.
    expect(readdirSync(dataDir).filter((f) => f.includes('corrupt'))).toEqual([])
    await other.kill()
    expect(jobsIn(file)).toBe(JOBS)
  }, 60_000)

  it('waits for a locked database when told to (OUTPOST_STORE_WAIT_MS), then starts with every job', async () => {
    const { dataDir, id, file } = fresh()
    seed(file)
    const other = await hold(file, 'exclusive')
    const dev = device(dataDir, id, { OUTPOST_STORE_WAIT_MS: '120000' })
    await dev.waitFor('STORE_LOCKED')
    other.child.stdin!.write('release\n')
    await other.exited
    await until(() => logOf(dev).some((l) => l.msg === 'ready'), 60_000)
    expect(jobsIn(file)).toBe(JOBS)
    expect(readdirSync(dataDir).filter((f) => f.includes('corrupt'))).toEqual([])
  }, 90_000)

  it('refuses to run a second process for the same device (STORE_IN_USE); the first keeps working', async () => {
    const { dataDir, id } = fresh()
    const first = device(dataDir, id)
    await until(() => logOf(first).some((l) => l.msg === 'ready'), 60_000)
    const watcher = await mqtt.connectAsync(broker.url, { clientId: `${id}-watcher` })
    cleanup(() => watcher.endAsync())
    let readings = 0
    watcher.on('message', () => readings++)
    await watcher.subscribeAsync(`ob/${id}/evt/thermo/1/reading`, { qos: 1 })

    const second = device(dataDir, id)
    const line = await endedWith(second, 'STORE_IN_USE')
    expect(line).toContain(`pid ${first.child.pid}`)
    // The first never lost its place: it is running and its readings keep coming.
    const before = readings
    await until(() => readings >= before + 3, 30_000)
    expect(first.child.exitCode).toBe(null)
  }, 90_000)

  it('says in one line that a read-only folder cannot be written (STORE_READ_ONLY), and moves nothing', async () => {
    const { id } = fresh()
    const ro = readOnlyFolder(path.join(base, `ro-${n}`))
    cleanup(() => ro.dispose())
    const file = path.join(ro.dir, `${id}.db`)
    seed(file)
    const bytes = readFileSync(file)
    ro.seal()
    const dev = device(ro.dir, id, {}, ro.spawnAs)
    await endedWith(dev, 'STORE_READ_ONLY')
    expect(readFileSync(file).equals(bytes)).toBe(true)
    expect(readdirSync(ro.dir).filter((f) => f.includes('corrupt'))).toEqual([])
  }, 60_000)

  it('ends with one line, not a stack trace, on a database of a newer schema (STORE_FAILED)', async () => {
    const { dataDir, id, file } = fresh()
    seed(file)
    const db = new Database(file)
    db.pragma(`user_version = ${MIGRATIONS.at(-1)!.version + 1}`)
    db.close()
    const dev = device(dataDir, id)
    const line = await endedWith(dev, 'STORE_FAILED')
    expect(line).toContain('newer')
    expect(existsSync(file)).toBe(true)
    expect(jobsIn(file)).toBe(JOBS)
  }, 60_000)

  // Found from outside (helper): a database with a table dropped ended the device with SQLite's
  // bare error and a 117 KB stack trace.
  it('ends with one line, not a stack trace, on a database that lacks a table (STORE_FAILED), and leaves it where it is', async () => {
    const { dataDir, id, file } = fresh()
    seed(file)
    const db = new Database(file)
    db.exec('DROP TABLE kv')
    db.close()
    const dev = device(dataDir, id)
    const line = await endedWith(dev, 'STORE_FAILED')
    expect(line).toContain('no such table: kv')
    expect(line).toContain('restore it from a backup, or move it away')
    expect(jobsIn(file)).toBe(JOBS)
    expect(readdirSync(dataDir).filter((f) => f.includes('corrupt'))).toEqual([])
  }, 60_000)

  // Found from outside (helper): a lock file that was a link to the database had the device's pid
  // written into the database's header (as its schema version), and the next start refused it.
  it('sets aside a lock file that is a link (to the database itself, say) and writes nothing through it', async () => {
    const { dataDir, id, file } = fresh()
    seed(file)
    // (Seeding left a lock file of its own: in its place, a link.)
    rmSync(`${file}.lock`, { force: true })
    symlinkSync(path.basename(file), `${file}.lock`)
    const version = (): number => {
      const db = new Database(file, { readonly: true })
      try {
        return db.pragma('user_version', { simple: true }) as number
      } finally {
        db.close()
      }
    }
    const dev = device(dataDir, id)
    await until(() => logOf(dev).some((l) => l.msg === 'ready'), 60_000)
    expect(version()).toBe(MIGRATIONS.at(-1)!.version)
    expect(readdirSync(dataDir).filter((f) => f.startsWith(`${id}.db.lock.damaged-`))).toHaveLength(1)
    expect(lstatSync(`${file}.lock`).isSymbolicLink()).toBe(false)
    await dev.kill()
    // And it starts again on it.
    const again = device(dataDir, id)
    await until(() => logOf(again).some((l) => l.msg === 'ready'), 60_000)
    expect(jobsIn(file)).toBe(JOBS)
  }, 90_000)

  it('survives another process writing for longer than the busy wait (STORE_BUSY), and goes on once it lets go', async () => {
    const { dataDir, id, file } = fresh()
    const dev = device(dataDir, id, { OUTPOST_SAMPLE_MS: '100' })
    await until(() => logOf(dev).some((l) => l.msg === 'ready'), 60_000)
    const watcher = await mqtt.connectAsync(broker.url, { clientId: `${id}-watcher` })
    cleanup(() => watcher.endAsync())
    let readings = 0
    watcher.on('message', () => readings++)
    await watcher.subscribeAsync(`ob/${id}/evt/thermo/1/reading`, { qos: 1 })
    await until(() => readings > 0, 30_000)

    // Holds the write lock well past the device's 5 s busy wait.
    const other = await hold(file, 'writer')
    // The device ran into the lock (it says so), or died of it.
    await until(() => dev.child.exitCode !== null || dev.lines.some((l) => l.includes('STORE_BUSY') || l.includes('database is locked')), 60_000)
    expect(dev.child.exitCode).toBe(null)
    const busyLines = logOf(dev).filter((l) => JSON.stringify(l).includes('STORE_BUSY')).length
    other.child.stdin!.write('release\n')
    await other.exited

    const after = readings
    await until(() => readings >= after + 3, 60_000)
    expect(dev.child.exitCode).toBe(null)
    expect(busyLines).toBeGreaterThan(0)
    expect(dev.lines.some((l) => /^\s+at /.test(l))).toBe(false)
  }, 120_000)
})
