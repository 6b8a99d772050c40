// The device issue 15's size goal names: the MQTT bridge, the SQLite stores, pino and one service.
// It is the thermo without over-the-air flashing, written from devices/thermo/main.ts (so that it
// follows the demo device) into a small project of its own: its devices/goal/main.ts, the rest
// linked to this repository. Built by test/build/goal-device.test.ts and the footprint bench.
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { PROJECT_ROOT } from '../../build/project-root.js'

/** devices/thermo/main.ts without the lines that add the over-the-air service. */
function goalEntry(from: string): string {
  const thermo = readFileSync(path.join(from, 'devices', 'thermo', 'main.ts'), 'utf8')
  const entry = thermo
    .split('\n')
    .filter((l) => !l.includes("from '../../runtime/ota/ota-service.js'") && !l.includes('Started by the launcher'))
    .join('\n')
    .replace(', ...otaWhenLaunched()', '')
    .replace("from './thermo-service.js'", "from '../thermo/thermo-service.js'")
  if (entry.includes('ota') || !entry.includes('createThermoService(')) throw new Error('devices/thermo/main.ts changed: the goal device no longer follows from it (test/helpers/goal-device.ts)')
  return entry
}

/** Makes the goal device's project in `root`, an empty folder, from the project at `from`; its device is named `goal`. */
export function writeGoalDeviceProject(root: string, from: string = PROJECT_ROOT): void {
  const at = (...p: string[]): string => path.join(root, ...p)
  mkdirSync(at('devices', 'goal'), { recursive: true })
  mkdirSync(at('build'))
  for (const dir of ['runtime', 'node_modules', 'build/stubs', 'devices/thermo', 'devices/contracts']) symlinkSync(path.join(from, dir), at(dir), 'dir')
  for (const file of ['package.json', 'devices/device-config.ts', 'devices/device-database.ts']) symlinkSync(path.join(from, file), at(file))
  writeFileSync(at('devices', 'goal', 'main.ts'), goalEntry(from))
}
