import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { createMemoryStateStore } from '../../runtime/index.js'
import { createSqliteStateStore, openDeviceDatabase, type DeviceDatabase } from '../../runtime/stores/sqlite/index.js'
import { describeStateStoreContract } from '../contracts/state-store.contract.js'

describeStateStoreContract('memory', {
  create: () => ({ store: createMemoryStateStore(), dispose: () => {} }),
  skip: [{ test: 'keeps values across a reopen', reason: 'memory is not durable by design' }],
})

describeStateStoreContract('sqlite', {
  create() {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-state-'))
    const file = path.join(dir, 'device.db')
    const opened: DeviceDatabase[] = []
    const open = () => {
      const d = openDeviceDatabase({ path: file })
      opened.push(d)
      return createSqliteStateStore(d)
    }
    return {
      store: open(),
      reopen: () => {
        opened[0]!.close()
        return open()
      },
      dispose: () => {
        for (const d of opened) d.close()
        rmSync(dir, { recursive: true, force: true })
      },
    }
  },
})
