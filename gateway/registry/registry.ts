import type { DeviceDatabase } from '../../runtime/stores/sqlite/index.js'

/** What the gateway knows of one device, from its retained presence (birth / last will). */
export interface DeviceEntry {
  device: string
  online: boolean
  instance?: string
  /** Runtime version the device announced. */
  runtime?: string
  firstSeen: number
  lastSeen: number
  /** When `online` last changed. */
  changedAt: number
  services: { name: string; version: string; commands: string[]; events: string[]; queues?: string[]; schedules?: string[] }[]
}

/** The fleet registry, kept in the gateway database (survives restarts). */
export interface Registry {
  /** Takes a frame published on `<prefix>/<device>/status` (an empty one: the device is gone). */
  observe(topic: string, payload: Uint8Array, at: number): void
  list(): DeviceEntry[]
  get(device: string): DeviceEntry | undefined
  /** Devices online now. */
  online(): number
  close(): void
}

/** STUB (issue 13, part E replaces it). */
export function createRegistry(_database: DeviceDatabase, _opts: { prefix?: string } = {}): Registry {
  return { observe: () => undefined, list: () => [], get: () => undefined, online: () => 0, close: () => undefined }
}
