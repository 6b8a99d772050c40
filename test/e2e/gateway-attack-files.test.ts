// The gateway's SQLite files handled from outside while it runs: gateway.db or broker.db deleted
// (the gateway kept writing to the unlinked files, lost at its next start, `outpost devices
// revoke` could no longer reach its device table, and /readyz still said ready), or locked by
// another process (a transient failure: the gateway stays up and recovers when the lock goes).
// (The tests run as root here: a file made read-only does not stop root's writes, so that case is not tried.)
import { rmSync } from 'node:fs'
import path from 'node:path'
import Database from 'better-sqlite3'
import type { MqttClient } from 'mqtt'
import { afterEach, describe, expect, it } from 'vitest'
import { until } from '../helpers/wait.js'
import { outpost, startGatewayProcess, type GatewayProcess } from './gateway-attack-process.js'

describe('gateway under attack: its database files', () => {
  let gw: GatewayProcess | undefined
  const clients: MqttClient[] = []
  afterEach(async () => {
    for (const c of clients.splice(0)) c.end(true)
    await gw?.stop()
    gw = undefined
  })

  for (const file of ['gateway.db', 'broker.db']) {
    it(`${file} deleted while the gateway runs: /readyz says the database is not ready, with one error line; the process stays up`, async () => {
      gw = await startGatewayProcess({ devices: ['dev-a'] })
      expect((await gw.get('/readyz')).status).toBe(200)
      for (const suffix of ['', '-wal', '-shm']) rmSync(path.join(gw.dataDir, file + suffix), { force: true })
      const res = await gw.get('/readyz')
      expect(res.status).toBe(503)
      expect(((await res.json()) as { notReady: string[] }).notReady).toEqual(['database'])
      await until(() => gw!.lines.some((l) => l.includes('database file deleted or replaced') && l.includes(file)), 10_000)
      // The table the CLI finds is not the gateway's any more: it says so rather than revoke nothing.
      if (file === 'gateway.db') expect((await outpost(['devices', 'revoke', 'dev-a', '--config', gw.configFile])).code).toBe(1)
      expect(gw.alive()).toBe(true)
    }, 60_000)
  }

  it('gateway.db locked by another process: /readyz says 503 meanwhile; the gateway stays up, ready again and taking logins once the lock is gone', async () => {
    gw = await startGatewayProcess({ devices: ['dev-a'] })
    const other = new Database(path.join(gw.dataDir, 'gateway.db'), { timeout: 1_000 })
    other.prepare('BEGIN EXCLUSIVE').run()
    try {
      const res = await gw.get('/readyz')
      expect(res.status).toBe(503)
    } finally {
      other.prepare('ROLLBACK').run()
      other.close()
    }
    expect((await gw.get('/readyz')).status).toBe(200)
    const a = await gw.connect('dev-a')
    clients.push(a)
    expect(a.connected).toBe(true)
    expect(gw.alive()).toBe(true)
  }, 60_000)
})
