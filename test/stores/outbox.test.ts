import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { createMemoryOutbox } from '../../runtime/index.js'
import { createSqliteOutbox, openDeviceDatabase, type DeviceDatabase } from '../../runtime/stores/sqlite/index.js'
import { describeOutboxContract } from '../contracts/outbox.contract.js'

describeOutboxContract('memory', {
  create: (limits) => ({ outbox: createMemoryOutbox({ limits }), dispose: () => {} }),
  skip: [{ test: 'keeps entries and their order across a reopen', reason: 'memory is not durable by design' }],
})

describeOutboxContract('sqlite', {
  create(limits) {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-outbox-'))
    const file = path.join(dir, 'device.db')
    const opened: DeviceDatabase[] = []
    const open = () => {
      const d = openDeviceDatabase({ path: file })
      opened.push(d)
      return createSqliteOutbox(d, { limits })
    }
    return {
      outbox: open(),
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
