import { randomBytes, scrypt, scryptSync, timingSafeEqual, type ScryptOptions } from 'node:crypto'
import { ErrorCode, OutpostError } from '../../runtime/errors.js'
import type { DeviceDatabase } from '../../runtime/stores/sqlite/index.js'
import { toStoreError } from '../../runtime/stores/sqlite/index.js'
import { isTopicSegment, TOPIC_LEVEL_RULE } from '../../runtime/topic-level.js'
import { RESERVED_DEVICE_IDS } from './reserved-ids.js'

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
  /** A new secret for a device (the old one stops working at once); a revoked device becomes active again. @throws DEVICE_UNKNOWN */
  rotate(id: string): { device: DeviceRecord; secret: string; wasRevokedAt?: number }
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

// scrypt with N = 2^11, r = 8, p = 1: 2 MiB and ~2–5 ms a check here. Secrets are 256 random
// bits the gateway makes, never passwords a person picks, so no cost factor is needed against
// guessing them from a stolen table (2^256 tries); the hash keeps the table from being a list of
// working credentials. The cost stays low because every connect pays it: 1,000 devices coming
// back after an outage must not wait on a memory-hard hash sized for passwords (N = 2^14 took
// 30 s and 16 MiB per login in flight for that storm).
const SCRYPT: ScryptOptions = { N: 1 << 11, r: 8, p: 1, maxmem: 32 * 1024 * 1024 }
const KEY_BYTES = 32
const SALT_BYTES = 16

const hashOf = (secret: Buffer, salt: Buffer): Promise<Buffer> =>
  new Promise((resolve, reject) => scrypt(secret, salt, KEY_BYTES, SCRYPT, (err, key) => (err ? reject(err) : resolve(key))))

/** A device's secret: 32 random bytes, base64url (43 characters, safe in a URL's userinfo). */
const newSecret = (): string => randomBytes(32).toString('base64url')

interface Row {
  id: string
  role: string
  salt: Buffer
  hash: Buffer
  created_at: number
  rotated_at: number | null
  revoked_at: number | null
}

const recordOf = (r: Row): DeviceRecord => {
  const d: DeviceRecord = { id: r.id, role: r.role, createdAt: r.created_at }
  if (r.rotated_at !== null) d.rotatedAt = r.rotated_at
  if (r.revoked_at !== null) d.revokedAt = r.revoked_at
  return d
}

/** Checks a device id as `outpost devices add` and the gateway take it. @throws BAD_ARGUMENT */
export function checkDeviceId(id: string): void {
  if (typeof id !== 'string' || !isTopicSegment(id)) throw new OutpostError(ErrorCode.BAD_ARGUMENT, `device id ${JSON.stringify(String(id)).slice(0, 140)} is not valid: ${TOPIC_LEVEL_RULE}`)
  if (RESERVED_DEVICE_IDS.includes(id)) throw new OutpostError(ErrorCode.BAD_ARGUMENT, `device id "${id}" is reserved for the gateway; choose another`)
  // A URL path reads them as folder steps: /devices/.. is /, so the HTTP face could never name it.
  if (id === '.' || id === '..') throw new OutpostError(ErrorCode.BAD_ARGUMENT, `device id "${id}" cannot be named in a URL (/devices/${id} means a folder step); choose another`)
  // Ids are shown to people (devices list, /devices, logs): one that differs from another only by
  // something invisible ("dev-a " or "dev-a" with a zero-width space, a bidi override, a byte that
  // was not UTF-8) would pass for it there.
  if (LOOKALIKE.test(id)) {
    const shown = id.slice(0, 128).replace(/[\s\p{Cf}\uFFFD]/gu, (c) => `\\u${c.codePointAt(0)!.toString(16).padStart(4, '0')}`)
    throw new OutpostError(ErrorCode.BAD_ARGUMENT, `device id "${shown}" is not valid: no spaces, invisible or formatting characters (zero-width, bidi), or U+FFFD (a byte that was not UTF-8)`)
  }
}

/** White space, Unicode format characters (zero-width, bidi controls) and the replacement character. */
const LOOKALIKE = /[\s\p{Cf}\uFFFD]/u

/**
 * Opens the device table of a gateway database. Secrets are kept as scrypt hashes (node:crypto)
 * with a salt of their own; storage errors leave as the runtime's store errors (STORE_BUSY, …).
 */
export function createDeviceTable(database: DeviceDatabase, opts: { now?: () => number } = {}): DeviceTable {
  const db = database.db
  const now = opts.now ?? Date.now
  const file = database.path
  const guard = <T>(fn: () => T): T => {
    try {
      return fn()
    } catch (err) {
      throw toStoreError(err, file, 'run')
    }
  }
  const byId = db.prepare<[string], Row>('SELECT * FROM devices WHERE id = ?')
  const all = db.prepare<[], Row>('SELECT * FROM devices ORDER BY id')
  const insert = db.prepare('INSERT INTO devices (id, role, salt, hash, created_at) VALUES (?, ?, ?, ?, ?)')
  const setSecret = db.prepare('UPDATE devices SET salt = ?, hash = ?, rotated_at = ?, revoked_at = NULL WHERE id = ?')
  const setRevoked = db.prepare('UPDATE devices SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL')
  const dataVersion = db.prepare<[], number>('PRAGMA data_version').pluck(true)
  // What changedSince compares with: each device's rotation and revocation as last seen.
  const stamps = db.prepare<[], { id: string; rotated_at: number | null; revoked_at: number | null }>('SELECT id, rotated_at, revoked_at FROM devices')
  const snapshot = (): Map<string, string> => new Map(stamps.all().map((r) => [r.id, `${r.rotated_at ?? ''}/${r.revoked_at ?? ''}`]))
  let seen = guard(snapshot)
  let seenVersion = guard(() => dataVersion.get())
  // Our own writes do not move data_version (it counts other connections' commits): they mark a change here.
  let ownWrite = false
  // A hash to compare with when the device is unknown or revoked, so that its answer takes as long.
  let decoy: Promise<{ salt: Buffer; hash: Buffer }> | undefined
  const decoyOf = (): Promise<{ salt: Buffer; hash: Buffer }> => {
    decoy ??= (async () => {
      const salt = randomBytes(SALT_BYTES)
      return { salt, hash: await hashOf(randomBytes(32), salt) }
    })()
    return decoy
  }

  /** A new secret's salt and hash, made synchronously: devices are added and rotated one at a time, from the CLI. */
  const hashNow = (secret: string): { salt: Buffer; hash: Buffer } => {
    const salt = randomBytes(SALT_BYTES)
    return { salt, hash: scryptSync(Buffer.from(secret), salt, KEY_BYTES, SCRYPT) }
  }

  return {
    add(id, role) {
      checkDeviceId(id)
      if (typeof role !== 'string' || !isTopicSegment(role)) throw new OutpostError(ErrorCode.BAD_ARGUMENT, `role ${JSON.stringify(String(role)).slice(0, 140)} is not valid: ${TOPIC_LEVEL_RULE}`)
      const secret = newSecret()
      const { salt, hash } = hashNow(secret)
      const at = now()
      guard(() => {
        try {
          insert.run(id, role, salt, hash, at)
        } catch (err) {
          if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') throw new OutpostError(ErrorCode.DEVICE_EXISTS, `device "${id}" exists already (outpost devices rotate ${id} gives it a new secret)`)
          throw err
        }
      })
      ownWrite = true
      return { device: { id, role, createdAt: at }, secret }
    },
    rotate(id) {
      const row = guard(() => byId.get(id))
      if (row === undefined) throw new OutpostError(ErrorCode.DEVICE_UNKNOWN, `no device "${String(id).slice(0, 140)}" (outpost devices add ${String(id).slice(0, 140)} creates it)`)
      const secret = newSecret()
      const { salt, hash } = hashNow(secret)
      const at = now()
      guard(() => setSecret.run(salt, hash, at, id))
      ownWrite = true
      return { device: { ...recordOf(row), rotatedAt: at, revokedAt: undefined }, secret, ...(row.revoked_at === null ? {} : { wasRevokedAt: row.revoked_at }) }
    },
    revoke(id) {
      const changed = guard(() => setRevoked.run(now(), id).changes) === 1
      if (changed) ownWrite = true
      return changed
    },
    get(id) {
      const r = guard(() => byId.get(id))
      return r === undefined ? undefined : recordOf(r)
    },
    list: () => guard(() => all.all()).map(recordOf),
    async verify(id, secret) {
      const row = typeof id === 'string' ? guard(() => byId.get(id)) : undefined
      const given = Buffer.isBuffer(secret) ? secret : Buffer.from(typeof secret === 'string' ? secret : '')
      const against = row === undefined || row.revoked_at !== null ? await decoyOf() : { salt: row.salt, hash: row.hash }
      const hash = await hashOf(given, against.salt)
      const equal = hash.length === against.hash.length && timingSafeEqual(hash, against.hash)
      if (!equal || row === undefined || row.revoked_at !== null) return undefined
      // Revoked or rotated while the hash was computed: the answer is the table's now.
      const still = guard(() => byId.get(id))
      if (still === undefined || still.revoked_at !== null || !still.hash.equals(row.hash)) return undefined
      return recordOf(still)
    },
    changedSince() {
      const version = guard(() => dataVersion.get())
      if (version === seenVersion && !ownWrite) return []
      seenVersion = version
      ownWrite = false
      const next = guard(snapshot)
      const changed: string[] = []
      for (const [id, stamp] of seen) if (next.get(id) !== stamp) changed.push(id)
      // Added since the last call and already revoked or rotated: its first secret may be in use.
      for (const [id, stamp] of next) if (!seen.has(id) && stamp !== '/') changed.push(id)
      seen = next
      return changed
    },
  }
}

