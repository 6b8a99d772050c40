import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import * as v from 'valibot'
import { afterEach, describe, expect, it } from 'vitest'
import { createMemoryBridge, createMemoryHub, createRuntime, defineContract, defineService, ErrorCode, isOutpostError } from '../../runtime/index.js'
import { createSqliteStateStore, openDeviceDatabase } from '../../runtime/stores/sqlite/index.js'

const counter = defineContract({
  name: 'tally',
  version: '1',
  commands: {
    bump: { payload: v.object({ key: v.string() }), result: v.object({ count: v.number() }) },
    corrupt: { payload: v.object({}), result: v.object({}) },
    keys: { payload: v.object({ prefix: v.string() }), result: v.array(v.string()) },
  },
})

const tally = defineService(counter, {
  state: v.object({ count: v.number() }),
  commands: {
    bump: ({ key }, ctx) => {
      const count = (ctx.state.get(key)?.count ?? 0) + 1
      ctx.state.set(key, { count })
      return { count }
    },
    corrupt: (_p, ctx) => {
      ctx.state.set('bad', { count: 'many' } as unknown as { count: number })
      return {}
    },
    keys: ({ prefix }, ctx) => ctx.state.list(prefix).map((e) => e.key),
  },
})

describe('service state', () => {
  const dirs: string[] = []
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
  })

  it('survives a restart of the device when kept in the device database', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-svc-state-'))
    dirs.push(dir)
    const file = path.join(dir, 'device.db')
    const boot = async () => {
      const database = openDeviceDatabase({ path: file })
      const rt = createRuntime({ bridge: createMemoryBridge({ hub: createMemoryHub(), deviceId: 'dev' }), services: [tally], stateStore: createSqliteStateStore(database) })
      await rt.start()
      return { rt, database }
    }
    const first = await boot()
    expect(await first.rt.client(counter).bump({ key: 'door/1' })).toEqual({ count: 1 })
    expect(await first.rt.client(counter).bump({ key: 'door/1' })).toEqual({ count: 2 })
    await first.rt.stop({ drainMs: 100 })
    first.database.close()

    const second = await boot()
    expect(await second.rt.client(counter).bump({ key: 'door/1' })).toEqual({ count: 3 })
    await second.rt.client(counter).bump({ key: 'door/2' })
    await second.rt.client(counter).bump({ key: 'window' })
    expect(await second.rt.client(counter).keys({ prefix: 'door/' })).toEqual(['door/1', 'door/2'])
    await second.rt.stop({ drainMs: 100 })
    second.database.close()
  })

  it('refuses a value that does not fit the declared schema', async () => {
    const rt = createRuntime({ bridge: createMemoryBridge({ hub: createMemoryHub(), deviceId: 'dev' }), services: [tally] })
    await rt.start()
    const err = await rt.client(counter).corrupt({}).catch((e: unknown) => e)
    expect(isOutpostError(err, ErrorCode.VALIDATION_FAILED)).toBe(true)
    expect(await rt.client(counter).keys({ prefix: '' })).toEqual([])
    await rt.stop({ drainMs: 100 })
  })
})
