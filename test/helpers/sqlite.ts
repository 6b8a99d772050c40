import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { openDeviceDatabase, type DeviceDatabase } from '../../runtime/stores/sqlite/index.js'

/**
 * A device database in a fresh temporary directory, for one store built on it: `store` is the
 * first, `reopen()` closes that database and builds the store again on the same file.
 */
export function storeOnTempDatabase<S>(build: (d: DeviceDatabase) => S): { store: S; reopen: () => S; dispose(): void } {
  const dir = mkdtempSync(path.join(tmpdir(), 'outpost-store-'))
  const file = path.join(dir, 'device.db')
  const opened: DeviceDatabase[] = []
  const open = (): S => {
    const d = openDeviceDatabase({ path: file })
    opened.push(d)
    return build(d)
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
}
