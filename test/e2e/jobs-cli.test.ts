// `outpost jobs …` run as a separate process against the database of a device that is running:
// inspect, dead letters, pause / resume and redrive, which the running device picks up.
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import * as v from 'valibot'
import { describe, expect, it } from 'vitest'
import { createMemoryBridge, createMemoryHub, createRuntime, defineContract, defineService } from '../../runtime/index.js'
import { createSqliteOutbox, createSqliteQueueStore, openDeviceDatabase } from '../../runtime/stores/sqlite/index.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { until } from '../helpers/wait.js'

const run = promisify(execFile)
const outpost = async (...args: string[]): Promise<{ code: number; out: string; err: string }> => {
  try {
    const r = await run(process.execPath, ['bin/outpost.js', ...args])
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
    expect(missing.err).toContain('STORE_FAILED: no device database at')
    const file = path.join(dir, 'device.db')
    openDeviceDatabase({ path: file }).close()
    const unknown = await outpost('jobs', 'dead', 'lab/nothing', '--db', file)
    expect(unknown.code).toBe(1)
    expect(unknown.err).toContain('NO_HANDLER: no queue "lab/nothing"')
    const noDb = await outpost('jobs', 'queues')
    expect(noDb.code).toBe(1)
    expect(noDb.err).toContain('INVALID_CONFIG: name the device database with --db FILE')
  }, 30_000)
})
