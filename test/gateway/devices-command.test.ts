// `outpost devices` through runDevicesCommand, on a real gateway.db in a temp folder: the secret
// it prints logs in (checked against the device table), list shows status and the registry's
// presence, revoke and rotate take effect, and wrong calls are typed errors.
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { runDevicesCommand } from '../../bin/devices.js'
import { createDeviceTable } from '../../gateway/devices/device-table.js'
import { openGatewayDatabase } from '../../gateway/store/gateway-database.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'

const MQTT_URL = 'mqtt://gw.local:1884'

/** The OutpostError code a promise rejects with (undefined when it resolves). */
const codeOf = async (p: Promise<unknown>): Promise<string | undefined> =>
  p.then(
    () => undefined,
    (err: { code?: string }) => err.code,
  )

describe('outpost devices (runDevicesCommand)', () => {
  const cleanup = cleanupAfterEach()
  const folder = (): string => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-devices-cmd-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    return path.join(dir, 'data')
  }
  /** Checks a secret against the table, as the gateway does at login. */
  const verify = async (dataDir: string, id: string, secret: string) => {
    const database = openGatewayDatabase(path.join(dataDir, 'gateway.db'), 'tool')
    try {
      return await createDeviceTable(database).verify(id, secret)
    } finally {
      database.close()
    }
  }

  it('add creates the data folder and database, prints a working secret once and a device line', async () => {
    const dataDir = folder()
    const out = await runDevicesCommand(['add', 'thermo-1'], { dataDir, mqttUrl: MQTT_URL })
    expect(existsSync(path.join(dataDir, 'gateway.db'))).toBe(true)
    const secret = /secret: ([A-Za-z0-9_-]{43})/.exec(out)?.[1]
    expect(secret).toBeDefined()
    expect(out).toContain('shown once')
    expect(out).toContain(`OUTPOST_DEVICE_ID=thermo-1 OUTPOST_MQTT_URL=mqtt://thermo-1:${secret}@gw.local:1884 npx outpost device`)
    expect(await verify(dataDir, 'thermo-1', secret!)).toMatchObject({ id: 'thermo-1', role: 'device' })
  })

  it('--json prints {id, role, secret, url} for add and rotate; the url carries the credentials', async () => {
    const dataDir = folder()
    const added = JSON.parse(await runDevicesCommand(['add', 'cam-1'], { dataDir, role: 'camera', json: true, mqttUrl: MQTT_URL }))
    expect(Object.keys(added).sort()).toEqual(['id', 'role', 'secret', 'url'])
    expect(added).toMatchObject({ id: 'cam-1', role: 'camera' })
    const url = new URL(added.url)
    expect([url.protocol, url.username, url.password, url.host]).toEqual(['mqtt:', 'cam-1', added.secret, 'gw.local:1884'])
    expect(await verify(dataDir, 'cam-1', added.secret)).toMatchObject({ role: 'camera' })

    const rotated = JSON.parse(await runDevicesCommand(['rotate', 'cam-1'], { dataDir, json: true, mqttUrl: MQTT_URL }))
    expect(rotated).toMatchObject({ id: 'cam-1', role: 'camera' })
    expect(rotated.secret).not.toBe(added.secret)
    expect(await verify(dataDir, 'cam-1', added.secret)).toBeUndefined()
    expect(await verify(dataDir, 'cam-1', rotated.secret)).toMatchObject({ id: 'cam-1' })
  })

  it('revoke stops the secret; list shows status and, from the registry, presence and last seen', async () => {
    const dataDir = folder()
    const a = JSON.parse(await runDevicesCommand(['add', 'a-1'], { dataDir, json: true, mqttUrl: MQTT_URL }))
    await runDevicesCommand(['add', 'b-1'], { dataDir, mqttUrl: MQTT_URL })
    await runDevicesCommand(['add', 'c-1'], { dataDir, mqttUrl: MQTT_URL })
    expect(await runDevicesCommand(['revoke', 'a-1'], { dataDir, mqttUrl: MQTT_URL })).toContain('revoked a-1')
    expect(await verify(dataDir, 'a-1', a.secret)).toBeUndefined()
    expect(JSON.parse(await runDevicesCommand(['revoke', 'a-1'], { dataDir, json: true, mqttUrl: MQTT_URL }))).toEqual({ id: 'a-1', revoked: true, already: true })

    // The gateway's registry has seen b-1 (online) and c-1 (offline); a-1 never connected.
    const database = openGatewayDatabase(path.join(dataDir, 'gateway.db'), 'tool')
    const seen = Date.UTC(2026, 10, 26, 12, 0, 0)
    const put = database.db.prepare('INSERT INTO registry (device, online, first_seen, last_seen, changed_at, services) VALUES (?, ?, ?, ?, ?, ?)')
    put.run('b-1', 1, seen, seen, seen, '[]')
    put.run('c-1', 0, seen, seen + 1000, seen, '[]')
    database.close()

    const rows = JSON.parse(await runDevicesCommand(['list'], { dataDir, json: true, mqttUrl: MQTT_URL }))
    expect(rows.map((r: { id: string }) => r.id)).toEqual(['a-1', 'b-1', 'c-1'])
    expect(rows[0]).toMatchObject({ id: 'a-1', role: 'device', status: 'revoked' })
    expect(rows[0].online).toBeUndefined()
    expect(rows[1]).toMatchObject({ id: 'b-1', status: 'active', online: true, lastSeen: seen })
    expect(rows[2]).toMatchObject({ id: 'c-1', status: 'active', online: false, lastSeen: seen + 1000 })

    const text = (await runDevicesCommand(['list'], { dataDir, mqttUrl: MQTT_URL })).split('\n')
    expect(text[0]).toMatch(/^ID\s+ROLE\s+STATUS\s+PRESENCE\s+LAST SEEN\s+CREATED$/)
    expect(text[1]).toMatch(/^a-1\s+device\s+revoked\s+never seen\s+-/)
    expect(text[2]).toMatch(/^b-1\s+device\s+active\s+online\s+2026-11-26 12:00:00/)
    expect(text[3]).toMatch(/^c-1\s+device\s+active\s+offline\s+2026-11-26 12:00:01/)
    // No secret or hash ever appears in a list.
    expect(text.join('\n')).not.toContain(a.secret)
  })

  it('list and revoke on a missing database say so and create nothing; an empty one lists no devices', async () => {
    const dataDir = folder()
    expect(await codeOf(runDevicesCommand(['list'], { dataDir, mqttUrl: MQTT_URL }))).toBe('NOT_FOUND')
    expect(await codeOf(runDevicesCommand(['revoke', 'x-1'], { dataDir, mqttUrl: MQTT_URL }))).toBe('NOT_FOUND')
    expect(existsSync(path.join(dataDir, 'gateway.db'))).toBe(false)
    // The database a gateway created, with no devices yet.
    mkdirSync(dataDir, { recursive: true })
    openGatewayDatabase(path.join(dataDir, 'gateway.db'), 'device').close()
    expect(await runDevicesCommand(['list'], { dataDir, mqttUrl: MQTT_URL })).toContain('no devices yet')
    expect(JSON.parse(await runDevicesCommand(['list'], { dataDir, json: true, mqttUrl: MQTT_URL }))).toEqual([])
  })

  it('wrong calls are typed errors: verb, missing or extra arguments, bad and reserved ids, twice added, unknown device', async () => {
    const dataDir = folder()
    const o = { dataDir, mqttUrl: MQTT_URL }
    expect(await codeOf(runDevicesCommand([], o))).toBe('BAD_ARGUMENT')
    expect(await codeOf(runDevicesCommand(['ad', 'x'], o))).toBe('BAD_ARGUMENT')
    expect(await codeOf(runDevicesCommand(['add'], o))).toBe('BAD_ARGUMENT')
    expect(await codeOf(runDevicesCommand(['add', 'x', 'y'], o))).toBe('BAD_ARGUMENT')
    expect(await codeOf(runDevicesCommand(['list', 'x'], o))).toBe('BAD_ARGUMENT')
    expect(await codeOf(runDevicesCommand(['revoke', 'x'], { ...o, role: 'admin' }))).toBe('BAD_ARGUMENT')
    expect(await codeOf(runDevicesCommand(['add', 'a/b'], o))).toBe('BAD_ARGUMENT')
    expect(await codeOf(runDevicesCommand(['add', '+'], o))).toBe('BAD_ARGUMENT')
    expect(await codeOf(runDevicesCommand(['add', 'gateway'], o))).toBe('BAD_ARGUMENT')
    expect(await codeOf(runDevicesCommand(['add', 'x'], { ...o, role: 'a#' }))).toBe('BAD_ARGUMENT')
    await runDevicesCommand(['add', 'x'], o)
    expect(await codeOf(runDevicesCommand(['add', 'x'], o))).toBe('DEVICE_EXISTS')
    expect(await codeOf(runDevicesCommand(['rotate', 'nope'], o))).toBe('DEVICE_UNKNOWN')
    expect(await codeOf(runDevicesCommand(['revoke', 'nope'], o))).toBe('DEVICE_UNKNOWN')
  })
})
