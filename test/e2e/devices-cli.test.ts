// `outpost devices` as a user runs it (node bin/outpost.js), beside a gateway that is running on
// the same data folder: the credentials it prints log in, a revoke or rotate made by the CLI
// cuts the device off, and wrong calls end with exit 2 and one line on stderr.
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import mqtt from 'mqtt'
import pino from 'pino'
import { describe, expect, it } from 'vitest'
import { defaultGatewayConfig } from '../../gateway/config/gateway-config.js'
import { startGateway } from '../../gateway/index.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { mountSmallDisk } from '../helpers/small-disk.js'
import { until } from '../helpers/wait.js'

const run = promisify(execFile)

// Variables a developer may have set that would change where the CLI looks or what it prints.
const CLEAN_ENV: Record<string, string> = Object.fromEntries(
  ['OUTPOST_MQTT_PORT', 'OUTPOST_MQTT_HOST', 'OUTPOST_GATEWAY_DATA_DIR', 'OUTPOST_HTTP_PORT', 'OUTPOST_HTTP_HOST', 'OUTPOST_HTTP_TOKEN', 'OUTPOST_AUTH', 'OUTPOST_GATEWAY_CONFIG', 'OUTPOST_LOG_LEVEL'].map((k) => [k, '']),
)

/** Runs `outpost devices …` on a data folder to its end (20 s at most: these runs end at once). */
async function devices(dataDir: string, ...args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  try {
    const r = await run(process.execPath, ['bin/outpost.js', 'devices', ...args], { env: { ...process.env, ...CLEAN_ENV, OUTPOST_GATEWAY_DATA_DIR: dataDir }, timeout: 20_000 })
    return { code: 0, out: r.stdout, err: r.stderr }
  } catch (e) {
    const x = e as { code: number | null; stdout: string; stderr: string }
    return { code: x.code, out: x.stdout, err: x.stderr }
  }
}

describe('outpost devices (CLI)', () => {
  const cleanup = cleanupAfterEach()
  const folder = (): string => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-devices-e2e-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    return dir
  }

  /** Connects a plain MQTT client; resolves whether the broker let it in. */
  const login = (url: string, username: string, password: string): Promise<{ ok: boolean; client: mqtt.MqttClient }> =>
    new Promise((resolve) => {
      const client = mqtt.connect(url, { username, password, clientId: username, reconnectPeriod: 0, connectTimeout: 10_000 })
      cleanup(() => client.end(true))
      client.once('connect', () => resolve({ ok: true, client }))
      client.once('error', () => resolve({ ok: false, client }))
      client.once('close', () => resolve({ ok: false, client }))
    })

  it('credentials from add log in to a running gateway; revoke and rotate from the CLI cut the device off', async () => {
    // A device added before any gateway ran there: the CLI creates the folder and gateway.db.
    const dataDir = path.join(folder(), 'data')
    const early = await devices(dataDir, 'add', 'early-1', '--json')
    expect(early.code).toBe(0)
    const config = defaultGatewayConfig()
    config.auth.enabled = true
    config.dataDir = dataDir
    const gw = await startGateway({ config, port: 0, logger: pino({ level: 'silent' }) })
    cleanup(() => gw.close())
    const port = new URL(gw.broker.url).port

    // Added by the CLI while the gateway holds gateway.db.
    const add = await devices(dataDir, 'add', 'thermo-1', '--json')
    expect(add.code).toBe(0)
    const added = JSON.parse(add.out) as { id: string; role: string; secret: string; url: string }
    expect(added).toMatchObject({ id: 'thermo-1', role: 'device' })
    expect((await login(gw.broker.url, 'early-1', (JSON.parse(early.out) as { secret: string }).secret)).ok).toBe(true)
    const { ok, client } = await login(gw.broker.url, 'thermo-1', added.secret)
    expect(ok).toBe(true)
    expect((await login(gw.broker.url, 'thermo-1', `${added.secret}x`)).ok).toBe(false)

    // rotate: the old secret's connection is cut, the old secret is refused, the new one works.
    const rotate = await devices(dataDir, 'rotate', 'thermo-1', '--json')
    expect(rotate.code).toBe(0)
    const rotated = JSON.parse(rotate.out) as { secret: string }
    await until(() => !client.connected, 15_000)
    expect((await login(gw.broker.url, 'thermo-1', added.secret)).ok).toBe(false)
    const again = await login(`mqtt://127.0.0.1:${port}`, 'thermo-1', rotated.secret)
    expect(again.ok).toBe(true)

    // revoke: cut off, and refused from then on.
    const revoke = await devices(dataDir, 'revoke', 'thermo-1')
    expect(revoke.code).toBe(0)
    expect(revoke.out).toContain('revoked thermo-1')
    await until(() => !again.client.connected, 15_000)
    expect((await login(gw.broker.url, 'thermo-1', rotated.secret)).ok).toBe(false)

    const list = await devices(dataDir, 'list', '--json')
    expect(list.code).toBe(0)
    expect(JSON.parse(list.out)).toMatchObject([{ id: 'early-1', status: 'active' }, { id: 'thermo-1', role: 'device', status: 'revoked' }])
  }, 90_000)

  it('add prints the secret once with a device line; wrong calls end with exit 2 and one line', async () => {
    const dataDir = path.join(folder(), 'data')
    const add = await devices(dataDir, 'add', 'cam-1', '--role', 'device')
    expect(add.code).toBe(0)
    expect(add.out).toContain('shown once')
    expect(add.out).toMatch(/OUTPOST_DEVICE_ID=cam-1 OUTPOST_MQTT_URL=mqtt:\/\/cam-1:[A-Za-z0-9_-]{43}@127\.0\.0\.1:1883 npx outpost device/)

    for (const [args, code, message] of [
      [['add', 'cam-1'], 1, /^outpost: DEVICE_EXISTS: device "cam-1" exists already/],
      [['ad', 'cam-2'], 2, /^outpost: BAD_ARGUMENT: outpost devices: unknown command "ad" \(did you mean add\?\)/],
      [['revoke'], 2, /^outpost: BAD_ARGUMENT: outpost devices revoke: which device\?/],
      [['add', 'a/b'], 2, /^outpost: BAD_ARGUMENT: device id "a\/b" is not valid/],
      // /devices/.. is / for every HTTP client: such a device could never be asked for.
      [['add', '..'], 2, /^outpost: BAD_ARGUMENT: device id "\.\." cannot be named in a URL/],
      [['add', '.'], 2, /^outpost: BAD_ARGUMENT: device id "\." cannot be named in a URL/],
      [['rotate', 'nope'], 1, /^outpost: DEVICE_UNKNOWN: no device "nope"/],
    ] as const) {
      const r = await devices(dataDir, ...args)
      expect({ args, code: r.code }).toEqual({ args, code })
      expect(r.err.trim().split('\n')).toHaveLength(1)
      expect(r.err.trim()).toMatch(message)
      // A wrong call also shows how to call it; a refused one does not.
      if (code === 2) expect(r.out).toContain('Usage: outpost devices')
    }

    // Rotating a revoked device makes it active again: said, not done quietly.
    expect((await devices(dataDir, 'revoke', 'cam-1')).code).toBe(0)
    const back = await devices(dataDir, 'rotate', 'cam-1')
    expect(back.code).toBe(0)
    expect(back.out).toMatch(/^cam-1 was revoked \(\d{4}-\d\d-\d\dT[\d:.]+Z\); with this secret it is active again\.$/m)
    expect((await devices(dataDir, 'list')).out).toMatch(/^cam-1\s+device\s+active/m)
    const again = await devices(dataDir, 'rotate', 'cam-1')
    expect(again.out).not.toContain('was revoked')

    // A folder with no gateway database: list says so and creates nothing.
    const empty = folder()
    const list = await devices(empty, 'list')
    expect(list.code).toBe(1)
    expect(list.err.trim()).toMatch(/^outpost: NOT_FOUND: no gateway database at /)
  }, 90_000)

  it('list reads a gateway database on a read-only disk (a backup, a read-only mount); add there is STORE_READ_ONLY', async () => {
    const disk = mountSmallDisk(path.join(folder(), 'disk'), '4m')
    if (disk === undefined) throw new Error('this test mounts a tmpfs: run it as root')
    cleanup(() => disk.dispose())
    expect((await devices(disk.dir, 'add', 'dev-ro')).code).toBe(0)
    disk.readOnly()
    const listed = await devices(disk.dir, 'list', '--json')
    expect([listed.code, listed.err]).toEqual([0, ''])
    expect((JSON.parse(listed.out) as { id: string }[]).map((d) => d.id)).toEqual(['dev-ro'])
    const add = await devices(disk.dir, 'add', 'dev-2')
    expect(add.code).toBe(1)
    expect(add.err).toMatch(/^outpost: STORE_READ_ONLY: /)
  }, 60_000)
})

