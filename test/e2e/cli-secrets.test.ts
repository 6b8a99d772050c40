// A broker URL with a password in it: the device logs in with it, and no line the CLI or the
// device writes shows it (the ready line, a broker that cannot be reached).
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import type { MqttBroker } from '../../gateway/broker/mqtt-broker.js'
import { freshAedes } from '../helpers/aedes.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { startProcess } from '../helpers/device-process.js'
import { freePort } from '../helpers/wait.js'

describe('broker credentials', () => {
  const cleanup = cleanupAfterEach()
  const dataDir = (): string => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-secrets-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    return dir
  }

  it('are used to log in and never written, whether the broker is there or not', async () => {
    const broker: MqttBroker = await freshAedes()
    cleanup(() => broker.close())
    const logins: { user?: string; password?: string }[] = []
    broker.aedes.authenticate = (client, user, password, done) => {
      logins.push({ user, password: password?.toString() })
      done(null, true)
    }
    const missing = await freePort()
    for (const [url, format] of [[`mqtt://admin:s3cretPW@127.0.0.1:${broker.port}`, 'json'], [`mqtt://admin:s3cretPW@127.0.0.1:${missing}`, 'pretty']] as const) {
      const device = startProcess('bin/outpost.js', ['device', 'display', '--id', `display-${format}`, '--url', url, '--log-format', format], { OUTPOST_DATA_DIR: dataDir() })
      cleanup(() => device.kill('SIGTERM'))
      await device.waitFor('ready')
      // Ready serves local work; the login comes after, in the background.
      await device.waitFor(url.includes(String(missing)) ? 'unreachable' : 'connected to the broker')
      await device.kill('SIGTERM')
      const out = device.lines.join('\n')
      expect(out).toContain('admin:***@127.0.0.1')
      expect(out).not.toContain('s3cretPW')
    }
    expect(logins).toContainEqual({ user: 'admin', password: 's3cretPW' })
  }, 90_000)
})
