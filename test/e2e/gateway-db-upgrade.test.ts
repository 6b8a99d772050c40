// A gateway.db made before `registry_contracts` was a step of the gateway database's migrations
// (schema version 1: devices and registry; the contract table made by the contract store when a
// gateway started, or not at all by a gateway that never got that far) is opened by this version,
// as users run it: `outpost devices list` on it, `outpost gateway` on it, a device over MQTT
// announcing its presence and contract document, GET /devices/:id/contract, and a restart.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import Database from 'better-sqlite3'
import mqtt, { type MqttClient } from 'mqtt'
import { afterAll, describe, expect, it } from 'vitest'
import { createDeviceTable } from '../../gateway/devices/device-table.js'
import { GATEWAY_MIGRATIONS } from '../../gateway/store/gateway-database.js'
import { openDeviceDatabase } from '../../runtime/stores/sqlite/index.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { outpost, startGatewayCli, type GatewayCli } from '../helpers/gateway-cli.js'
import { presenceSlots, rawFrame, rawId } from '../helpers/raw-wire.js'
import { until } from '../helpers/wait.js'

const TOKEN = 'upgrade-test-token-0123456789'
const root = mkdtempSync(path.join(tmpdir(), 'outpost-db-upgrade-'))
afterAll(() => rmSync(root, { recursive: true, force: true }))

/** The contract table as the contract store of schema version 1 made it when a gateway started. */
const OLD_CONTRACT_TABLE = `CREATE TABLE IF NOT EXISTS registry_contracts (
    device      TEXT    PRIMARY KEY,
    instance    TEXT    NOT NULL,
    received_at INTEGER NOT NULL,
    bytes       INTEGER NOT NULL,
    document    TEXT    NOT NULL
  ) WITHOUT ROWID`

const oldDocument = { v: 1, dialect: 'draft-07', services: [{ name: 'old', version: '1', commands: {}, events: {} }] }
const newDocument = { v: 1, dialect: 'draft-07', services: [{ name: 'probe', version: '2', commands: { set: { payload: { type: 'object' } } }, events: {} }] }

/**
 * A folder with gateway.yaml and data/gateway.db at schema version 1 holding device `meter-1`
 * (its secret returned), a registry row for it and, `withTable`, the contract table with its
 * document of an earlier process.
 */
function oldFolder(name: string, withTable: boolean): { dir: string; config: string; db: string; secret: string } {
  const dir = path.join(root, name)
  mkdirSync(path.join(dir, 'data'), { recursive: true })
  const config = path.join(dir, 'gateway.yaml')
  writeFileSync(config, `dataDir: data\nmqtt: { port: 0 }\nhttp: { port: 0, token: ${TOKEN} }\nlog: { level: info, format: json }\n`)
  const db = path.join(dir, 'data', 'gateway.db')
  const database = openDeviceDatabase({ path: db, migrations: GATEWAY_MIGRATIONS.slice(0, 1), synchronous: 'FULL' })
  try {
    expect(database.version).toBe(1)
    const { secret } = createDeviceTable(database).add('meter-1', 'device')
    const at = Date.now() - 60_000
    database.db.prepare('INSERT INTO registry (device, online, instance, runtime, first_seen, last_seen, changed_at, services) VALUES (?, 0, ?, ?, ?, ?, ?, ?)').run('meter-1', 'old-inst', '0.1.0', at, at, at, '[]')
    if (withTable) {
      database.db.exec(OLD_CONTRACT_TABLE)
      database.db.prepare('INSERT INTO registry_contracts (device, instance, received_at, bytes, document) VALUES (?, ?, ?, ?, ?)').run('meter-1', 'old-inst', at, 100, JSON.stringify(oldDocument))
    }
    return { dir, config, db, secret }
  } finally {
    database.close()
  }
}

/** Schema version and tables of a database file, read without changing it. */
function schemaOf(file: string): { version: number; tables: string[] } {
  const db = new Database(file, { readonly: true, fileMustExist: true })
  try {
    return { version: db.pragma('user_version', { simple: true }) as number, tables: db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1`).pluck().all() as string[] }
  } finally {
    db.close()
  }
}

/** A contract envelope (kind 4 on the wire), written by hand as any MQTT client could. */
const contractFrame = (src: string, inst: string, document: unknown): Buffer => rawFrame([1, 4, rawId(), src, inst, Date.now(), null, null, null, null, null, null, null, null, null, null, document])

describe('a gateway.db of schema version 1', () => {
  const cleanup = cleanupAfterEach()

  const start = async (config: string, lines: string[]): Promise<GatewayCli> => {
    const gw = await startGatewayCli(config, lines)
    cleanup(async () => {
      if (gw.exited()) return
      gw.child.kill('SIGTERM')
      await until(gw.exited, 15_000)
    })
    return gw
  }
  const stop = async (gw: GatewayCli): Promise<void> => {
    gw.child.kill('SIGTERM')
    await until(gw.exited, 15_000)
  }
  const contractOf = async (gw: GatewayCli): Promise<{ status: number; body: { instance?: string; current?: boolean; document?: unknown } }> => {
    const res = await fetch(`${gw.http}/devices/meter-1/contract`, { headers: { authorization: `Bearer ${TOKEN}` } })
    return { status: res.status, body: (await res.json()) as never }
  }
  /** meter-1 over MQTT: its presence and its contract document, both retained, of process `raw-inst`. */
  const announce = async (gw: GatewayCli, secret: string): Promise<MqttClient> => {
    const client = await mqtt.connectAsync(gw.url, { clientId: 'meter-1', username: 'meter-1', password: secret, reconnectPeriod: 0 })
    cleanup(() => client.endAsync(true))
    await client.publishAsync('ob/meter-1/status', rawFrame(presenceSlots({ src: 'meter-1', services: [{ name: 'probe', version: '2', commands: ['set'], events: [] }] })), { qos: 1, retain: true })
    await client.publishAsync('ob/meter-1/contract', contractFrame('meter-1', 'raw-inst', newDocument), { qos: 1, retain: true })
    return client
  }

  it('with the contract table its gateway made: the gateway opens it, keeps the old document, records the new one, and it survives a restart', async () => {
    const f = oldFolder('with-table', true)
    const lines: string[] = []
    let gw = await start(f.config, lines)
    expect(schemaOf(f.db)).toEqual({ version: 2, tables: ['devices', 'registry', 'registry_contracts'] })
    // The document kept before the upgrade is served (of the process the registry knows, offline now).
    expect(await contractOf(gw)).toEqual({ status: 200, body: expect.objectContaining({ instance: 'old-inst', current: true, document: oldDocument }) })
    // The device's secret from before works; its new document replaces the old one.
    const client = await announce(gw, f.secret)
    let c = await contractOf(gw)
    // Recorded, and current once the registry has the presence of that process too (the two frames
    // may reach it in either order, and the presence may come second under load).
    for (const end = Date.now() + 20_000; !(c.body.instance === 'raw-inst' && c.body.current === true) && Date.now() < end; c = await contractOf(gw)) await new Promise((r) => setTimeout(r, 100))
    expect(c).toEqual({ status: 200, body: expect.objectContaining({ instance: 'raw-inst', current: true, document: newDocument }) })
    await client.endAsync(true)
    await stop(gw)
    gw = await start(f.config, lines)
    expect((await contractOf(gw)).body).toMatchObject({ instance: 'raw-inst', document: newDocument })
    expect(lines.join('\n')).not.toMatch(/"level":(50|60)|\n\s+at .+:\d+:\d+/)
  }, 90_000)

  it('without it: `outpost devices list` updates it when no gateway runs; the gateway then records and keeps contract documents', async () => {
    const f = oldFolder('without-table', false)
    expect(schemaOf(f.db)).toEqual({ version: 1, tables: ['devices', 'registry'] })
    const list = await outpost(['devices', 'list', '--json', '--config', f.config])
    expect(list.code, list.err).toBe(0)
    expect(JSON.parse(list.out)).toMatchObject([{ id: 'meter-1' }])
    expect(schemaOf(f.db)).toEqual({ version: 2, tables: ['devices', 'registry', 'registry_contracts'] })
    const lines: string[] = []
    let gw = await start(f.config, lines)
    expect((await contractOf(gw)).status).toBe(404)
    await announce(gw, f.secret)
    let c = await contractOf(gw)
    for (const end = Date.now() + 20_000; c.body.instance !== 'raw-inst' && Date.now() < end; c = await contractOf(gw)) await new Promise((r) => setTimeout(r, 100))
    expect(c).toEqual({ status: 200, body: expect.objectContaining({ instance: 'raw-inst', current: true, document: newDocument }) })
    // Beside the running gateway, as before.
    expect((await outpost(['devices', 'list', '--config', f.config])).code).toBe(0)
    await stop(gw)
    gw = await start(f.config, lines)
    expect((await contractOf(gw)).body).toMatchObject({ instance: 'raw-inst', document: newDocument })
    expect(lines.join('\n')).not.toMatch(/"level":(50|60)|\n\s+at .+:\d+:\d+/)
  }, 90_000)

  it('without it, while a gateway of the older version holds it: `outpost devices list` says so in one line and changes nothing', async () => {
    const f = oldFolder('held', false)
    // This process stands for the older gateway: it holds the database's lock, at schema version 1.
    const older = openDeviceDatabase({ path: f.db, migrations: GATEWAY_MIGRATIONS.slice(0, 1), synchronous: 'FULL' })
    cleanup(() => older.close())
    const r = await outpost(['devices', 'list', '--config', f.config])
    expect(r.code).toBe(1)
    expect(r.err.trim().split('\n')).toEqual([expect.stringMatching(/^outpost: STORE_FAILED: gateway database .* has an older schema, and the gateway that runs on it is of an older version; restart it with this version/)])
    older.close()
    expect(schemaOf(f.db)).toEqual({ version: 1, tables: ['devices', 'registry'] })
  }, 60_000)
})
