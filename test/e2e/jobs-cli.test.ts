// `outpost jobs …` run as a separate process against the database of a device that is running:
// inspect, dead letters, pause / resume and redrive, which the running device picks up.
import { execFile } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import Database from 'better-sqlite3'
import * as v from 'valibot'
import { describe, expect, it } from 'vitest'
import { createMemoryBridge, createMemoryHub, createRuntime, defineContract, defineService } from '../../runtime/index.js'
import { createSqliteOutbox, createSqliteQueueStore, openDeviceDatabase } from '../../runtime/stores/sqlite/index.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { startProcess } from '../helpers/device-process.js'
import { readOnlyFolder } from '../helpers/small-disk.js'
import { until } from '../helpers/wait.js'

const run = promisify(execFile)
const outpost = async (...args: string[]): Promise<{ code: number; out: string; err: string }> => outpostAs({}, ...args)
const outpostAs = async (as: { uid?: number; gid?: number }, ...args: string[]): Promise<{ code: number; out: string; err: string }> => {
  try {
    const r = await run(process.execPath, [path.resolve('bin/outpost.js'), ...args], { ...as, cwd: process.cwd() })
    return { code: 0, out: r.stdout.trim(), err: r.stderr }
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string }
    return { code: x.code, out: x.stdout.trim(), err: x.stderr }
  }
}

const lab = defineContract({
  name: 'lab',
  version: '1',
  queues: { work: { payload: v.object({ n: v.number() }), result: v.object({ n: v.number() }), maxAttempts: 1 } },
})

describe('outpost jobs', () => {
  const cleanup = cleanupAfterEach()

  it('inspects, pauses, resumes and redrives the queues of a running device', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-cli-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    const file = path.join(dir, 'device.db')
    const database = openDeviceDatabase({ path: file })
    let broken = true
    const svc = defineService(lab, {
      commands: {},
      workers: { work: ({ n }, ctx) => (broken && n === 1 ? ctx.fail('sensor unplugged') : { n }) },
    })
    const rt = createRuntime({
      bridge: createMemoryBridge({ hub: createMemoryHub(), deviceId: 'lab-1' }),
      services: [svc],
      queueStore: createSqliteQueueStore(database),
      outbox: createSqliteOutbox(database),
      queuePollMs: 100,
    })
    await rt.start()
    cleanup(() => database.close(), () => rt.stop({ drainMs: 200 }))
    const work = rt.queue(lab, 'work')
    const failing = work.enqueue({ n: 1 })
    work.enqueue({ n: 2 })
    await until(() => work.metrics().completed === 1 && work.metrics().dead === 1)

    const queues = await outpost('jobs', 'queues', '--db', file)
    expect(queues.code).toBe(0)
    expect(queues.out).toContain('lab/work: ready 0, delayed 0, leased 0, completed 1, dead 1')

    const dead = JSON.parse((await outpost('jobs', 'dead', 'lab/work', '--db', file, '--json')).out) as Record<string, unknown>[]
    expect(dead).toEqual([expect.objectContaining({ id: failing.id, deadReason: 'failed', errorCode: 'JOB_FAILED', error: 'sensor unplugged', payload: { n: 1 } })])

    // Paused from the shell, the running device leaves new jobs alone …
    expect((await outpost('jobs', 'pause', 'lab/work', '--db', file)).out).toBe('lab/work paused')
    const held = work.enqueue({ n: 3 })
    await new Promise((r) => setTimeout(r, 300))
    expect(work.get(held.id)?.state).toBe('ready')
    // … until it is resumed.
    expect((await outpost('jobs', 'resume', 'lab/work', '--db', file)).out).toBe('lab/work resumed')
    await until(() => work.get(held.id)?.state === 'completed', 3_000)

    // The sensor is fixed; the dead letter goes round again and succeeds.
    broken = false
    // A job id mistyped: nothing redriven, and said so; a job that is not dead is named, not redriven.
    const typo = await outpost('jobs', 'redrive', 'lab/work', `${failing.id.slice(0, -1)}X`, failing.id, '--db', file)
    expect(typo.code).toBe(1)
    expect(typo.err).toContain(`NOT_FOUND: no job ${failing.id.slice(0, -1)}X in queue lab/work`)
    expect(typo.err).toContain('nothing was redriven')
    expect(work.get(failing.id)?.state).toBe('dead')
    expect((await outpost('jobs', 'redrive', 'lab/work', held.id, '--db', file)).out).toBe(`0 jobs back to ready; ${held.id} is completed, not dead`)
    expect((await outpost('jobs', 'redrive', 'lab/work', '--db', file)).out).toBe('1 job back to ready')
    await until(() => work.get(failing.id)?.state === 'completed', 3_000)
    const status = await outpost('jobs', 'status', failing.id, '--db', file)
    expect(status.out).toContain('state: completed')
    expect(status.out).toContain('output: {"n":1}')
    expect((await outpost('jobs', 'purge', 'lab/work', 'completed', '--db', file)).out).toBe('3 completed jobs deleted')
  }, 60_000)

  it('says clearly what is wrong with a call, and never creates a database', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-cli-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    const missing = await outpost('jobs', 'queues', '--db', path.join(dir, 'nope.db'))
    expect(missing.code).toBe(1)
    expect(missing.err).toContain('NOT_FOUND: no device database at')
    expect(readdirSync(dir)).toEqual([])
    const file = path.join(dir, 'device.db')
    openDeviceDatabase({ path: file }).close()
    const unknown = await outpost('jobs', 'dead', 'lab/nothing', '--db', file)
    expect(unknown.code).toBe(1)
    expect(unknown.err).toContain('NOT_FOUND: no queue "lab/nothing"')
    const noJob = await outpost('jobs', 'status', '01ZZZZZZZZZZZZZZZZZZZZZZZZ', '--db', file)
    expect(noJob.code).toBe(1)
    expect(noJob.err).toContain('NOT_FOUND: no job 01ZZZZZZZZZZZZZZZZZZZZZZZZ')
    const noId = await outpost('jobs', 'status', '--db', file)
    expect(noId.code).toBe(2)
    expect(noId.err).toContain('BAD_ARGUMENT: outpost jobs status needs a job id')
    const noDb = await outpost('jobs', 'queues')
    expect(noDb.code).toBe(2)
    expect(noDb.err).toContain('BAD_ARGUMENT')
    expect(noDb.err).toContain('--db')
    // A word more is a mistake, not ignored (found from outside: `cancel ID1 ID2` cancelled ID1 only, exit 0).
    for (const [args, line] of [
      [['cancel', '01AAAAAAAAAAAAAAAAAAAAAAAA', '01BBBBBBBBBBBBBBBBBBBBBBBB'], 'outpost jobs cancel takes one job id (got also "01BBBBBBBBBBBBBBBBBBBBBBBB"); nothing was changed'],
      [['queues', 'extra'], 'outpost jobs queues takes no argument (got also "extra")'],
      [['resume', 'thermo/sample', 'bogus'], 'outpost jobs resume takes one queue (got also "bogus")'],
      [['purge', 'thermo/sample', 'dead', 'junk'], 'outpost jobs purge takes a queue and a state (got also "junk")'],
    ] as const) {
      const r = await outpost('jobs', ...args, '--db', file)
      expect(r.code, args.join(' ')).toBe(2)
      expect(r.err).toContain(`BAD_ARGUMENT: ${line}`)
    }
  }, 30_000)

  it('never damages what it is pointed at: a README, an empty file, a database the device closed', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-cli-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    const readme = path.join(dir, 'README.md')
    copyFileSync('README.md', readme)
    const empty = path.join(dir, 'empty.db')
    writeFileSync(empty, '')
    const file = path.join(dir, 'device.db')
    const d = openDeviceDatabase({ path: file })
    createSqliteQueueStore(d).enqueue({ queue: 'lab/work', payload: { n: 1 } }, Date.now())
    d.close()
    const listing = readdirSync(dir).sort()
    const readmeBytes = readFileSync(readme)
    const dbBytes = readFileSync(file)

    for (const args of [['queues'], ['dead', 'lab/work'], ['pause', 'lab/work'], ['purge', 'lab/work', 'ready']]) {
      const r = await outpost('jobs', ...args, '--db', readme)
      expect(r.code).toBe(2)
      const lines = r.err.trim().split('\n')
      expect(lines).toHaveLength(1)
      expect(lines[0]).toContain('BAD_ARGUMENT')
      expect(lines[0]).toContain('not a device database')
      const e = await outpost('jobs', ...args, '--db', empty)
      expect(e.code).toBe(2)
      expect(e.err).toContain('empty')
    }
    expect(readFileSync(readme).equals(readmeBytes)).toBe(true)
    expect(statSync(empty).size).toBe(0)

    // Inspecting a database its device closed cleanly makes nothing beside it, changes nothing.
    const queues = await outpost('jobs', 'queues', '--db', file)
    expect(queues.code).toBe(0)
    expect(queues.out).toContain('lab/work: ready 1')
    expect((await outpost('jobs', 'dead', 'lab/work', '--db', file)).out).toBe('no dead letters')
    expect(readFileSync(file).equals(dbBytes)).toBe(true)
    expect(readdirSync(dir).sort()).toEqual(listing)
  }, 60_000)

  it('refuses an SQLite file that is not a device database without changing a byte of it (BAD_ARGUMENT)', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-cli-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    const files: string[] = []
    for (const version of [0, 3, 9, 50]) {
      const f = path.join(dir, `users-${version}.db`)
      const db = new Database(f)
      db.exec('CREATE TABLE users (id, name)')
      db.pragma(`user_version = ${version}`)
      db.close()
      files.push(f)
    }
    // A device's lock file is an SQLite file too (its user_version is the holder's pid), held
    // locked while the device runs (in a process of its own: this one would drop an SQLite
    // lock it held by reading the file below, as POSIX locks go with any descriptor closed).
    const device = startProcess(path.resolve('bin/outpost.js'), ['device', 'thermo', '--url', 'mqtt://127.0.0.1:9', '--log-format', 'json'], { OUTPOST_DATA_DIR: path.join(dir, 'data') })
    cleanup(() => device.kill('SIGTERM'))
    await device.waitFor('"msg":"ready"', 60_000)
    files.push(path.join(dir, 'data', 'thermo-1.db.lock'))
    const listing = readdirSync(dir).sort()
    const bytes = files.map((f) => readFileSync(f))
    for (const f of files) {
      for (const args of [['pause', 'thermo/sample'], ['purge', 'thermo/sample', 'dead'], ['cancel', '01ZZZZZZZZZZZZZZZZZZZZZZZZ'], ['queues']]) {
        const r = await outpost('jobs', ...args, '--db', f)
        expect(r.code, `${args[0]} ${f}: ${r.err}`).toBe(2)
        const lines = r.err.trim().split('\n')
        expect(lines).toHaveLength(1)
        expect(lines[0]).toContain('BAD_ARGUMENT')
        expect(lines[0]).toContain('not a device database')
      }
    }
    files.forEach((f, i) => expect(readFileSync(f).equals(bytes[i]!), f).toBe(true))
    expect(readdirSync(dir).sort()).toEqual(listing)
    expect(device.lines.join('\n')).not.toContain('"level":60')
  }, 120_000)

  it('says that a directory is a directory (BAD_ARGUMENT), for every command', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-cli-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    const folder = path.join(dir, 'data')
    mkdirSync(folder)
    for (const args of [['queues'], ['status', '01ZZZZZZZZZZZZZZZZZZZZZZZZ'], ['dead', 'lab/work'], ['pause', 'lab/work'], ['redrive', 'lab/work']]) {
      const r = await outpost('jobs', ...args, '--db', folder)
      expect(r.code, r.err).toBe(2)
      expect(r.err.trim().split('\n')).toHaveLength(1)
      expect(r.err).toContain('BAD_ARGUMENT')
      expect(r.err).toContain('is a directory')
    }
    expect(readdirSync(folder)).toEqual([])
  }, 60_000)

  it('inspects a copied database and its write-ahead log, leaving nothing beside them, even in a folder it cannot write', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-cli-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    // A device that runs: its last jobs are in the log, not yet in the database file.
    const live = path.join(dir, 'live.db')
    const d = openDeviceDatabase({ path: live })
    d.db.pragma('wal_autocheckpoint = 0')
    createSqliteQueueStore(d).enqueueMany(Array.from({ length: 5 }, (_, n) => ({ queue: 'lab/work', payload: { n } })), Date.now())
    cleanup(() => d.close())
    const ro = readOnlyFolder(path.join(dir, 'copy'))
    cleanup(() => ro.dispose())
    const copy = path.join(ro.dir, 'device.db')
    copyFileSync(live, copy)
    copyFileSync(`${live}-wal`, `${copy}-wal`)
    expect(existsSync(`${copy}-shm`)).toBe(false)

    const here = await outpost('jobs', 'queues', '--db', copy)
    expect(here.code, here.err).toBe(0)
    expect(here.out).toContain('lab/work: ready 5')
    expect(readdirSync(ro.dir).sort()).toEqual(['device.db', 'device.db-wal'])

    ro.seal()
    const sealed = await outpostAs(ro.spawnAs, 'jobs', 'queues', '--db', copy)
    expect(sealed.code, sealed.err).toBe(0)
    expect(sealed.out).toContain('lab/work: ready 5')
    expect(readdirSync(ro.dir).sort()).toEqual(['device.db', 'device.db-wal'])
  }, 60_000)
})
