import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { createMemoryBridge, createMemoryHub, createMemoryInbox, createMessenger, createRuntime, ENVELOPE_VERSION, type Envelope } from '../../runtime/index.js'
import { createSqliteInbox, openDeviceDatabase, type DeviceDatabase } from '../../runtime/stores/sqlite/index.js'
import { describeInboxContract } from '../contracts/inbox.contract.js'
import { counterService, type Observed } from '../fixtures/services.js'
import { storeOnTempDatabase } from '../helpers/sqlite.js'

describeInboxContract('memory', { durable: false, create: () => ({ inbox: createMemoryInbox(1_000), dispose: () => {} }) })

describeInboxContract('sqlite', {
  durable: true,
  create() {
    const t = storeOnTempDatabase((d) => createSqliteInbox(d, { window: 1_000 }))
    return { inbox: t.store, reopen: t.reopen, dispose: t.dispose }
  },
})

const dbs: { dir: string; d: DeviceDatabase[] }[] = []

describe('commands and a restart of the device', () => {
  afterEach(() => {
    for (const { dir, d } of dbs.splice(0)) {
      for (const x of d) x.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('answers a command delivered again after a restart from the stored reply, without running it again', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-inbox-rt-'))
    const entry = { dir, d: [] as DeviceDatabase[] }
    dbs.push(entry)
    const hub = createMemoryHub()
    const seen: Observed = { executions: 0, slowAborted: 0, events: [] }
    const boot = async () => {
      const d = openDeviceDatabase({ path: path.join(dir, 'device.db') })
      entry.d.push(d)
      const rt = createRuntime({ bridge: createMemoryBridge({ hub, deviceId: 'dev-a' }), services: [counterService(seen)], inbox: createSqliteInbox(d) })
      await rt.start()
      return { rt, d }
    }
    const probe = createMessenger({ bridge: createMemoryBridge({ hub, deviceId: 'probe' }) })
    await probe.connect()
    const replies: Envelope[] = []
    await probe.subscribe(probe.topics.replyFilter('probe'), (m) => void replies.push(m.envelope))
    const cmd = (id: string): Envelope => ({
      v: ENVELOPE_VERSION, kind: 'command', id, src: 'probe', inst: 'p', at: Date.now(), service: 'counter', version: '1', name: 'add',
      target: 'dev-a', replyTo: 'probe', deadline: Date.now() + 5_000, payload: { deviceId: 'x', reading: 1, ts: 1 },
    })
    const settle = () => new Promise((r) => setTimeout(r, 30))

    const first = await boot()
    await probe.publish(cmd('CMD-1'))
    await settle()
    await first.rt.stop({ drainMs: 100 })
    first.d.close()

    const second = await boot()
    await probe.publish(cmd('CMD-1')) // the broker delivers it again after the restart
    await settle()
    expect(seen.executions).toBe(1)
    expect(replies.length).toBe(2)
    expect(replies[1]!.payload).toEqual(replies[0]!.payload)

    // A command a previous start claimed but never answered (it died) is run again.
    createSqliteInbox(second.d).claim('CMD-2', 'a-previous-instance')
    await probe.publish(cmd('CMD-2'))
    await settle()
    expect(seen.executions).toBe(2)
    expect(replies.at(-1)!.corr).toBe('CMD-2')
    await second.rt.stop({ drainMs: 100 })
    await probe.close({ drainMs: 50 })
  })
})
