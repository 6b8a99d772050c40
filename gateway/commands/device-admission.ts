// Whether a device can log in at all, for the command router (authentication on): one removed
// from the device table or revoked never comes back, so a call for it fails at once instead of
// being held until its deadline.
import { ErrorCode, OutpostError } from '../../runtime/errors.js'
import type { DeviceTable } from '../devices/device-table.js'
import { shown } from './shown.js'

export interface DeviceAdmission {
  /** @throws DEVICE_UNKNOWN when `device` is not in the device table or is revoked */
  check(device: string): void
  /** Moves whenever the table changed: a held call looks at the table again only then. */
  readonly version: number
  /** Told by the revocation watch (devices revoked, rotated or removed). */
  changed(ids: readonly string[]): void
}

export function createDeviceAdmission(devices: Pick<DeviceTable, 'get'>): DeviceAdmission {
  let version = 0
  return {
    check(device) {
      let record
      try {
        record = devices.get(device)
      } catch {
        // An unreadable table (busy, locked) refuses nobody: the revocation watch logs it.
        return
      }
      if (record === undefined) {
        throw new OutpostError(ErrorCode.DEVICE_UNKNOWN, `device ${shown(device)} is not in the gateway's device table: it cannot log in (outpost devices add ${shown(device)})`, { details: { device, registered: false } })
      }
      if (record.revokedAt !== undefined) {
        throw new OutpostError(ErrorCode.DEVICE_UNKNOWN, `device ${shown(device)} is revoked: it cannot log in until outpost devices rotate ${shown(device)} gives it a new secret`, { details: { device, revokedAt: record.revokedAt } })
      }
    },
    get version() {
      return version
    },
    changed(ids) {
      if (ids.length > 0) version++
    },
  }
}
