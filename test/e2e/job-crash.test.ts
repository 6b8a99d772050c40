// kill -9 a device at random moments while it runs jobs and publishes their result events, 50
// times, with a real broker (aedes) and a subscriber listening all along. Afterwards every job is
// completed or dead-lettered, none lost, and every result event reached the subscriber; one that
// drops duplicates by message id sees exactly one result per job.
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Decoder } from 'cbor-x'
import mqtt from 'mqtt'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { MqttBroker } from '../../gateway/broker/mqtt-broker.js'
import { freshAedes } from '../helpers/aedes.js'
import { until } from '../helpers/wait.js'
import { buildHelperProcess } from '../helpers/processes.js'

const KILLS = 50
const JOBS = 4_000

describe('crash safety of the job queue', () => {
  let dir: string
  let script: string
  let broker: MqttBroker
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'outpost-job-crash-'))
    script = await buildHelperProcess('job-worker')
    broker = await freshAedes()
  })
  afterAll(async () => {
    await broker.close()
    rmSync(dir, { recursive: true, force: true })
  })

  /** Runs the device once; kills it `killAfterMs` after it is ready, or lets it drain. */
  const run = (dbPath: string, killAfterMs?: number): Promise<string> =>
    new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [script, dbPath, broker.url, String(JOBS), killAfterMs === undefined ? 'drain' : 'chaos'], { stdio: ['ignore', 'pipe', 'inherit'] })
      let out = ''
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString()
        if (killAfterMs !== undefined && out.includes('ready\n') && !child.killed) setTimeout(() => child.kill('SIGKILL'), killAfterMs)
      })
      child.once('exit', (code, signal) => (signal === 'SIGKILL' || code === 0 ? resolve(out) : reject(new Error(`device exited with ${code}: ${out}`))))
    })

  it(`loses no job and no result event across ${KILLS} SIGKILLs`, async () => {
    // The subscriber keeps a persistent session and stays connected the whole time.
    const sub = await mqtt.connectAsync(broker.url, { clientId: 'result-listener', clean: false })
    const dec = new Decoder({ useRecords: false, mapsAsObjects: true })
    const received: { id: string; name: string; n: number; jobId: string; attempt: number }[] = []
    sub.on('message', (_t, buf) => {
      const a = dec.decode(buf) as unknown[]
      const p = a[16] as { jobId: string; attempt: number; output?: { n: number } }
      received.push({ id: a[2] as string, name: a[8] as string, n: p.output?.n ?? -1, jobId: p.jobId, attempt: p.attempt })
    })
    await sub.subscribeAsync('ob/chaos-dev/evt/chaos/1/+', { qos: 1 })

    const dbPath = path.join(dir, 'device.db')
    for (let k = 0; k < KILLS; k++) await run(dbPath, 20 + Math.floor(Math.random() * 130))
    const completedDuringChaos = new Set(received.filter((r) => r.name === 'work.completed').map((r) => r.n)).size
    const last = await run(dbPath)
    const metrics = JSON.parse(last.slice(last.indexOf('drained ') + 8)) as { completed: number; dead: number }

    // Every job finished one way or the other; poison jobs (every 97th) are the dead ones.
    const poison = Array.from({ length: JOBS }, (_, n) => n).filter((n) => n % 97 === 0)
    expect(metrics.completed + metrics.dead).toBe(JOBS)
    expect(metrics.dead).toBe(poison.length)

    // Every result event arrived (the last ones may still be on their way to the subscriber).
    const completedEvents = (): typeof received => received.filter((r) => r.name === 'work.completed')
    await until(() => new Set(completedEvents().map((r) => r.n)).size === JOBS - poison.length, 15_000)
    await until(() => new Set(received.filter((r) => r.name === 'work.dead').map((r) => r.jobId)).size === poison.length, 15_000)
    await sub.endAsync()

    // Deduplicated by message id, each job has exactly one completion: a job finished by a
    // process that died before its settlement committed left no event behind to send.
    const distinctIds = new Map<number, Set<string>>()
    for (const r of completedEvents()) distinctIds.set(r.n, (distinctIds.get(r.n) ?? new Set()).add(r.id))
    expect([...distinctIds.values()].every((ids) => ids.size === 1)).toBe(true)
    // The kills did hit a device at work: jobs were done between kills, and some were finished
    // only on a later attempt, after the lease a killed process held had run out.
    expect(completedDuringChaos).toBeGreaterThan(0)
    expect(completedEvents().some((r) => r.attempt > 1)).toBe(true)
    console.log(`job chaos: ${completedDuringChaos} jobs completed between kills; ${new Set(completedEvents().filter((r) => r.attempt > 1).map((r) => r.n)).size} completed on a later attempt; ${received.length - new Set(received.map((r) => r.id)).size} duplicate deliveries dropped by id`)
  }, 180_000)
})
