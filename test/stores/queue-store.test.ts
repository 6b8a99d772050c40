import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { createSqliteQueueStore, openDeviceDatabase, type DeviceDatabase } from '../../runtime/stores/sqlite/index.js'
import { describeQueueStoreContract } from '../contracts/queue-store.contract.js'

describeQueueStoreContract('sqlite', {
  create() {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-queue-'))
    const file = path.join(dir, 'device.db')
    const opened: DeviceDatabase[] = []
    const open = () => {
      const d = openDeviceDatabase({ path: file })
      opened.push(d)
      return createSqliteQueueStore(d)
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
