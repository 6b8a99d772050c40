// A durable queue fed by events: a camera emits `taken`, the archive device turns each event
// into exactly one `resize` job (event-to-queue), its worker retries, fails or succeeds, and a
// dashboard follows the queue's result events. Jobs live in a SQLite device database.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import * as v from 'valibot'
import { createMemoryBridge, createMemoryHub } from 'outpost/bridges'
import { defineContract, defineService } from 'outpost/contracts'
import { createRuntime } from 'outpost/runtime'
import { createSqliteOutbox, createSqliteQueueStore, openDeviceDatabase } from 'outpost/stores/sqlite'

const Photo = v.object({ photo: v.number(), kib: v.number() })
const camera = defineContract({
  name: 'camera',
  version: '1',
  commands: { shoot: { payload: Photo, result: v.object({}) } },
  events: { taken: Photo },
})
const archive = defineContract({
  name: 'archive',
  version: '1',
  queues: {
    resize: {
      payload: Photo,
      result: v.object({ kib: v.number() }),
      maxAttempts: 3,
      backoff: { initialMs: 100, maxMs: 1_000 }, // short, for the example
    },
  },
})

const cameraService = defineService(camera, {
  commands: {
    shoot: async (p, ctx) => {
      await ctx.emit('taken', p)
      return {}
    },
  },
})

let flaky = true
const archiveService = defineService(archive, {
  commands: {},
  bindings: (b) => ({ photos: b.event(camera, 'taken', 'resize') }),
  workers: {
    resize: ({ photo, kib }, ctx) => {
      if (photo === 3) return ctx.fail(`photo ${photo} is corrupt`)
      if (photo === 2 && flaky) {
        flaky = false
        throw new Error('storage busy') // retried with backoff
      }
      return { kib: Math.round(kib / 4) }
    },
  },
})

const dashboardService = defineService(defineContract({ name: 'dashboard', version: '1' }), {
  commands: {},
  subscriptions: (s) => ({
    done: s.on(archive, 'resize.completed', ({ output, attempt }) => console.log(`dashboard: resized to ${output.kib} KiB on attempt ${attempt}`)),
    failed: s.on(archive, 'resize.failed', ({ attempt, error }) => console.log(`dashboard: attempt ${attempt} failed (${error.code}), will retry`)),
    dead: s.on(archive, 'resize.dead', ({ reason, error }) => console.log(`dashboard: gave up (${reason}): ${error.message}`)),
  }),
})

const dir = mkdtempSync(path.join(tmpdir(), 'outpost-example-'))
const database = openDeviceDatabase({ path: path.join(dir, 'archive-1.db') })
const hub = createMemoryHub()
const cameraDevice = createRuntime({ bridge: createMemoryBridge({ hub, deviceId: 'cam-1' }), services: [cameraService] })
const archiveDevice = createRuntime({
  bridge: createMemoryBridge({ hub, deviceId: 'archive-1' }),
  services: [archiveService],
  queueStore: createSqliteQueueStore(database), // jobs survive restarts and power cuts
  outbox: createSqliteOutbox(database), // result events commit with the job's outcome
})
const dashboard = createRuntime({ bridge: createMemoryBridge({ hub, deviceId: 'dash-1' }), services: [dashboardService] })
for (const rt of [dashboard, archiveDevice, cameraDevice]) await rt.start()

const resize = archiveDevice.queue(archive, 'resize')
const settle = async (): Promise<void> => {
  for (let m = resize.metrics(); m.ready + m.delayed + m.leased > 0; m = resize.metrics()) await new Promise((r) => setTimeout(r, 20))
  await new Promise((r) => setTimeout(r, 50)) // let the last result events arrive
}

const shoot = (photo: number, kib: number) => cameraDevice.client(camera).shoot({ photo, kib })
await shoot(1, 2048)
await settle()
await shoot(2, 4096)
await settle()
await shoot(3, 1024)
await settle()
const m = resize.metrics()
console.log(`queue: completed ${m.completed}, dead ${m.dead}`)
console.log(`dead letter: ${resize.listDead()[0]?.error}`)

await cameraDevice.stop()
await archiveDevice.stop()
await dashboard.stop()
database.close()
rmSync(dir, { recursive: true, force: true })
