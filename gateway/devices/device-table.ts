import { ErrorCode, OutpostError } from '../../runtime/errors.js'
import type { DeviceDatabase } from '../../runtime/stores/sqlite/index.js'

/** A device allowed on the gateway's broker (its secret is never kept, only a scrypt hash). */
export interface DeviceRecord {
  id: string
  role: string
  createdAt: number
  rotatedAt?: number
  revokedAt?: number
}

/** The devices table of the gateway database (gateway/store/gateway-database.ts). */
export interface DeviceTable {
  /**
   * Adds a device with a new random secret, returned once (never stored: only its scrypt hash).
   * @throws BAD_ARGUMENT for an id that is not a valid topic level or is reserved, DEVICE_EXISTS when it exists
   */
  add(id: string, role: string): { device: DeviceRecord; secret: string }
  /** A new secret for a device (the old one stops working at once). @throws DEVICE_UNKNOWN */
  rotate(id: string): { device: DeviceRecord; secret: string }
  /** Revokes a device: its credentials stop working. @returns false when it was unknown or already revoked */
  revoke(id: string): boolean
  get(id: string): DeviceRecord | undefined
  list(): DeviceRecord[]
  /**
   * Checks credentials (scrypt, compared in constant time). Resolves the device when they are
   * right and it is not revoked, undefined otherwise (an unknown id costs the same time as a wrong secret).
   */
  verify(id: string, secret: Buffer | string): Promise<DeviceRecord | undefined>
  /**
   * Devices revoked, rotated or removed since the last call, also by another process (the CLI):
   * the gateway disconnects their clients. Cheap when nothing changed (PRAGMA data_version).
   */
  changedSince(): string[]
}

/** STUB (issue 13, part B replaces it). */
export function createDeviceTable(_database: DeviceDatabase): DeviceTable {
  const no = (): never => {
    throw new OutpostError(ErrorCode.INTERNAL, 'device table not built yet')
  }
  return { add: no, rotate: no, revoke: no, get: () => undefined, list: () => [], verify: async () => undefined, changedSince: () => [] }
}
