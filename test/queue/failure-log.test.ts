// A device offline whose jobs each call a service on another device: every attempt fails the
// same way (BRIDGE_UNAVAILABLE) for as long as the broker is away. One warning line per attempt
// made 167,000 lines (45 MB) in 150 s offline; now one line per queue and code a minute, with the
// count of the others, while each attempt still has its `failed` event.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { pino } from 'pino'
import * as v from 'valibot'
import { describe, expect, it } from 'vitest'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createMemoryBridge, createMemoryHub, createRuntime, defineContract, defineService, ErrorCode, OutpostError } from '../../runtime/index.js'
import { createSqliteOutbox, createSqliteQueueStore, openDeviceDatabase } from '../../runtime/stores/sqlite/index.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { until } from '../helpers/wait.js'

const far = defineContract({ name: 'far', version: '1', commands: { get: { payload: v.object({}), result: v.object({}) } } })
const near = defineContract({
  name: 'near',
  version: '1',
  queues: { call: { payload: v.object({ n: v.number() }), result: v.object({}), maxAttempts: 3, backoff: { initialMs: 1, maxMs: 1 } } },
})

describe('worker failures while offline', () => {
  const cleanup = cleanupAfterEach()

  it('are logged once per queue and code a minute, not once per attempt', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-failure-log-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    const database = openDeviceDatabase({ path: path.join(dir, 'device.db') })
    cleanup(() => database.close())
    const lines: { msg: string; level: number }[] = []
    const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as { msg: string; level: number }) })
    const service = defineService(near, { uses: [far], commands: {}, workers: { call: async (_p, ctx) => (await ctx.service.far['1'].get({}), {}) } })
    const rt = createRuntime({ bridge: createMqttBridge({ url: 'mqtt://127.0.0.1:9', deviceId: 'near-1' }), services: [service], queueStore: createSqliteQueueStore(database), outbox: createSqliteOutbox(database), logger })
    await rt.start({ connectInBackground: true })
    cleanup(() => rt.stop({ drainMs: 100 }))
    const q = rt.queue(near, 'call')
    for (let n = 0; n < 40; n++) q.enqueue({ n })
    // 40 jobs × 3 attempts, each failing: all dead.
    await until(() => q.metrics().dead === 40, 20_000)
    const failures = lines.filter((l) => /cannot reach far@1/.test(l.msg))
    expect(failures.length).toBeGreaterThanOrEqual(1)
    expect(failures.length).toBeLessThanOrEqual(2)
    expect(rt.stats().outbox!.appended).toBeGreaterThanOrEqual(40 * 3)
    // Not counted among the frames of other devices that were refused (a limiter of its own).
    expect(Object.keys(rt.stats().rejections)).toEqual([])
  }, 30_000)

  it('a failure of the worker itself (not of the link) is still logged at every attempt', async () => {
    const lines: { msg: string }[] = []
    const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as { msg: string }) })
    const service = defineService(near, { uses: [far], commands: {}, workers: { call: ({ n }) => { throw new OutpostError(ErrorCode.VALIDATION_FAILED, `reading ${n} is out of range`) } } })
    const rt = createRuntime({ bridge: createMemoryBridge({ hub: createMemoryHub(), deviceId: 'near-2' }), services: [service], logger })
    await rt.start()
    cleanup(() => rt.stop({ drainMs: 100 }))
    const q = rt.queue(near, 'call')
    for (let n = 0; n < 5; n++) q.enqueue({ n })
    await until(() => q.metrics().dead === 5, 20_000)
    expect(lines.filter((l) => /out of range/.test(l.msg))).toHaveLength(15)
  }, 30_000)
})
