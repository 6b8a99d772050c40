// The gateway's device table through its public API, on a real gateway.db in a temp folder:
// credentials are checked against scrypt hashes, revocations and rotations take effect at
// once, and the gateway sees a change another process (the CLI) made.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { createDeviceTable } from '../../gateway/devices/device-table.js'
import { openGatewayDatabase } from '../../gateway/store/gateway-database.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'

/** The OutpostError code a call throws with (undefined when it does not throw). */
const codeOf = (fn: () => unknown): string | undefined => {
  try {
    fn()
  } catch (err) {
    return (err as { code?: string }).code
  }
  return undefined
}

describe('device table', () => {
  const cleanup = cleanupAfterEach()
  const open = (dir?: string) => {
    const folder = dir ?? mkdtempSync(path.join(tmpdir(), 'outpost-devices-'))
    if (dir === undefined) cleanup(() => rmSync(folder, { recursive: true, force: true }))
    const database = openGatewayDatabase(path.join(folder, 'gateway.db'), dir === undefined ? 'device' : 'tool')
    cleanup(() => database.close())
    return { folder, database, table: createDeviceTable(database) }
  }

  it('accepts the secret it handed out, and refuses a wrong one, an unknown device and a wrong id type', async () => {
    const { table } = open()
    const { device, secret } = table.add('thermo-1', 'device')
    expect(device).toMatchObject({ id: 'thermo-1', role: 'device' })
    expect(secret).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect(await table.verify('thermo-1', secret)).toMatchObject({ id: 'thermo-1', role: 'device' })
    expect(await table.verify('thermo-1', Buffer.from(secret))).toMatchObject({ id: 'thermo-1' })
    expect(await table.verify('thermo-1', `${secret}x`)).toBeUndefined()
    expect(await table.verify('thermo-1', '')).toBeUndefined()
    expect(await table.verify('nobody', secret)).toBeUndefined()
    expect(await table.verify(42 as unknown as string, secret)).toBeUndefined()
  })

  it('keeps no secret in the file, only a salted hash: two devices never share one', () => {
    const { table, database } = open()
    const a = table.add('a', 'device')
    const b = table.add('b', 'device')
    const rows = database.db.prepare('SELECT salt, hash FROM devices ORDER BY id').all() as { salt: Buffer; hash: Buffer }[]
    expect(rows).toHaveLength(2)
    expect(rows[0]!.salt.equals(rows[1]!.salt)).toBe(false)
    const dump = database.db.prepare('SELECT * FROM devices').all()
    expect(JSON.stringify(dump)).not.toContain(a.secret)
    expect(JSON.stringify(dump)).not.toContain(b.secret)
  })

  it('refuses bad and reserved ids, bad roles and a device that exists, each with its code', async () => {
    const { table } = open()
    table.add('display-1', 'device')
    expect(codeOf(() => table.add('display-1', 'device'))).toBe('DEVICE_EXISTS')
    for (const id of ['', 'a/b', '+', '#', 'x'.repeat(129), 'bad\u0000id', 'gateway']) {
      expect(codeOf(() => table.add(id, 'device')), JSON.stringify(id)).toBe('BAD_ARGUMENT')
    }
    expect(codeOf(() => table.add('ok', 'a/b'))).toBe('BAD_ARGUMENT')
    expect(codeOf(() => table.rotate('nobody'))).toBe('DEVICE_UNKNOWN')
    expect(table.revoke('nobody')).toBe(false)
  })

  it('a revoked device is refused; rotating gives a new secret and the old one stops working', async () => {
    const { table } = open()
    const first = table.add('d1', 'device')
    expect(table.revoke('d1')).toBe(true)
    expect(table.revoke('d1')).toBe(false)
    expect(table.get('d1')?.revokedAt).toBeTypeOf('number')
    expect(await table.verify('d1', first.secret)).toBeUndefined()
    const second = table.rotate('d1')
    expect(second.secret).not.toBe(first.secret)
    expect(await table.verify('d1', first.secret)).toBeUndefined()
    expect(await table.verify('d1', second.secret)).toMatchObject({ id: 'd1' })
    expect(table.get('d1')?.revokedAt).toBeUndefined()
    expect(table.list().map((d) => d.id)).toEqual(['d1'])
  })

  it('a check in flight when the device is revoked answers no', async () => {
    const { table } = open()
    const { secret } = table.add('d2', 'device')
    const pending = table.verify('d2', secret)
    table.revoke('d2')
    expect(await pending).toBeUndefined()
  })

  it('changedSince reports revocations and rotations, its own and those of another connection (the CLI), once each', () => {
    const gw = open()
    gw.table.add('a', 'device')
    gw.table.add('b', 'device')
    gw.table.add('c', 'device')
    gw.table.changedSince()
    expect(gw.table.changedSince()).toEqual([])
    const cli = open(gw.folder)
    cli.table.revoke('a')
    cli.table.rotate('b')
    expect(gw.table.changedSince().sort()).toEqual(['a', 'b'])
    expect(gw.table.changedSince()).toEqual([])
    gw.table.revoke('c')
    expect(gw.table.changedSince()).toEqual(['c'])
    // Adding a device changes nobody's standing.
    cli.table.add('d', 'device')
    expect(gw.table.changedSince()).toEqual([])
    // Added and revoked (or rotated) between two calls: reported, its first secret may be in use.
    cli.table.add('e', 'device')
    cli.table.revoke('e')
    gw.table.add('f', 'device')
    gw.table.rotate('f')
    expect(gw.table.changedSince().sort()).toEqual(['e', 'f'])
  })
})
