// The gateway's SQLite files handled from outside while it runs: gateway.db or broker.db deleted
// (the gateway kept writing to the unlinked files, lost at its next start, `outpost devices
// revoke` could no longer reach its device table, and /readyz still said ready), or locked by
// another process (a transient failure: the gateway stays up and recovers when the lock goes, and
// its readiness probe says so without waiting for the lock).
// (The tests run as root here: a file made read-only does not stop root's writes, so that case is not tried.)
import { readdirSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import Database from 'better-sqlite3'
import type { MqttClient } from 'mqtt'
import { afterEach, describe, expect, it } from 'vitest'
import { until } from '../helpers/wait.js'
import { outpost, startGatewayProcess, type GatewayProcess } from './gateway-attack-process.js'
import { startGatewayCli } from '../helpers/gateway-cli.js'
import { presenceSlots, rawFrame } from '../helpers/raw-wire.js'

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
      // The probe does not wait for the lock: it waited out SQLite's 5 s busy wait each time, and
      // the gateway's broker and HTTP with it. Three probes in a row (15 s of waiting before) end
      // well inside one busy wait; /healthz answers meanwhile.
      const began = performance.now()
      for (let i = 0; i < 3; i++) expect((await gw.get('/readyz')).status).toBe(503)
      expect((await gw.get('/healthz')).status).toBe(200)
      expect(performance.now() - began).toBeLessThan(5_000)
      // A device that logs in and announces itself meanwhile: the registry's writes give up
      // quickly and are tried again later (each waited 5 s, the broker and HTTP with it).
      const a = await gw.connect('dev-a')
      clients.push(a)
      await a.publishAsync('ob/dev-a/status', rawFrame(presenceSlots({ src: 'dev-a', services: [{ name: 'x', version: '1', commands: ['y'], events: [] }] })), { qos: 1, retain: true })
      // The registry writes 50 ms after a change: by then the probes below are under way.
      await new Promise((r) => setTimeout(r, 30))
      const probed = performance.now()
      for (let i = 0; i < 5; i++) {
        expect((await gw.get('/healthz')).status).toBe(200)
        await new Promise((r) => setTimeout(r, 100))
      }
      expect(performance.now() - probed).toBeLessThan(5_000)
    } finally {
      other.prepare('ROLLBACK').run()
      other.close()
    }
    expect((await gw.get('/readyz')).status).toBe(200)
    // Once the lock is gone, the registry has what the device announced.
    for (let t = 0; ((await (await gw!.get('/devices/dev-a')).json()) as { online?: boolean }).online !== true; t++) {
      if (t > 200) throw new Error('dev-a never recorded online')
      await new Promise((r) => setTimeout(r, 100))
    }
    const b = await gw.connect('dev-a')
    clients.push(b)
    expect(b.connected).toBe(true)
    expect(gw.alive()).toBe(true)
  }, 60_000)

  it('gateway.db damaged: the start stops with STORE_CORRUPT and sets it aside; the next start, with a new and empty device table, says every login is refused and where the old table went', async () => {
    gw = await startGatewayProcess({ devices: ['dev-a'] })
    const { dataDir, configFile } = gw
    const stopped = gw
    gw = undefined
    stopped.child.kill('SIGTERM')
    await until(() => !stopped.alive(), 15_000)
    for (const suffix of ['-wal', '-shm']) rmSync(path.join(dataDir, `gateway.db${suffix}`), { force: true })
    writeFileSync(path.join(dataDir, 'gateway.db'), Buffer.alloc(8192, 0x5a))
    const failed = await outpost(['gateway', '--config', configFile])
    expect(failed.code).toBe(1)
    expect(failed.err + failed.out).toContain('STORE_CORRUPT')
    const aside = readdirSync(dataDir).filter((f) => f.startsWith('gateway.db.corrupt-') && !/-(wal|shm)$/.test(f))
    expect(aside).toHaveLength(1)
    // A supervisor starts it again: it runs, with no device, and says so.
    const lines: string[] = []
    const again = await startGatewayCli(configFile, lines)
    try {
      const warning = lines.find((l) => l.includes('every device login is refused'))
      expect(warning).toContain(path.join(dataDir, aside[0]!))
      expect(warning).toContain('outpost devices add')
    } finally {
      again.child.kill('SIGTERM')
      await until(again.exited, 15_000)
      rmSync(stopped.dir, { recursive: true, force: true })
    }
  }, 60_000)
})

