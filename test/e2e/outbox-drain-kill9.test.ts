// Outside test (issue 12, direct publisher): a device process draining a 30,000-entry outbox over
// the transport's own QoS 1 publishes is killed with SIGKILL three times mid-drain and started
// again each time. A plain mqtt.js subscriber on aedes counts: every entry arrives at least once,
// first arrivals in order, and the outbox ends empty.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import mqtt from 'mqtt'
import { describe, expect, it } from 'vitest'
import { startMqttBroker } from '../../gateway/broker/mqtt-broker.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { startProcess, type TestProcess } from '../helpers/device-process.js'
import { buildHelperProcess } from '../helpers/processes.js'
import { until } from '../helpers/wait.js'

const TOTAL = 30_000

describe('kill -9 of a device mid-drain', () => {
  const cleanup = cleanupAfterEach()

  it('loses nothing across three SIGKILLs and restarts', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-kill9-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    const script = await buildHelperProcess('drain-device')
    const broker = await startMqttBroker({ port: 0 })
    cleanup(() => broker.close())
    const seen: number[] = []
    const sub = await mqtt.connectAsync(broker.url, { clientId: 'kill9-counter' })
    cleanup(() => sub.endAsync(true))
    sub.on('message', (_t, buf) => seen.push(Number(buf.toString('utf8'))))
    await sub.subscribeAsync('drain/dev/#', { qos: 1 })
    const unique = (): number => new Set(seen).size
    const dbPath = path.join(dir, 'dev.db')

    let proc: TestProcess = startProcess(script, [dbPath, broker.url, 'fill', String(TOTAL)], {})
    cleanup(() => proc.kill())
    await proc.waitFor(`entries ${TOTAL}`, 20_000)
    for (const at of [5_000, 12_000, 20_000]) {
      await until(() => unique() >= at, 30_000)
      await proc.kill('SIGKILL')
      proc = startProcess(script, [dbPath, broker.url], {})
      await proc.waitFor('connected', 20_000)
    }
    await proc.waitFor('drained', 40_000)
    await until(() => unique() === TOTAL, 5_000).catch(() => {})
    const got = new Set(seen)
    const missing: number[] = []
    for (let i = 1; i <= TOTAL; i++) if (!got.has(i)) missing.push(i)
    expect(missing.length, `missing: ${missing.slice(0, 20).join(',')}`).toBe(0)
    const firsts: number[] = []
    const had = new Set<number>()
    for (const n of seen) if (!had.has(n)) (had.add(n), firsts.push(n))
    expect(firsts.filter((n, i) => i > 0 && n < firsts[i - 1]!)).toEqual([])
    expect(seen.every((n) => n >= 1 && n <= TOTAL)).toBe(true)
  }, 90_000)
})
