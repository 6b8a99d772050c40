// A gateway restarted (an upgrade, a crash and its supervisor) comes up with every device
// offline, and the devices reconnect within seconds. A command in those seconds, a RabbitMQ
// request delivered again after the crash among them, was answered DEVICE_OFFLINE at once for a
// device that was back a moment later. It now waits for a device that was online before the
// restart (within its deadline, at most 10 s); a device the gateway never saw is still refused
// at once.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { defaultGatewayConfig } from '../../gateway/config/gateway-config.js'
import { startGateway } from '../../gateway/index.js'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createRuntime } from '../../runtime/index.js'
import { echoService } from '../fixtures/services.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { until } from '../helpers/wait.js'

const quiet = pino({ level: 'silent' })

describe('commands just after a gateway restart', () => {
  const cleanup = cleanupAfterEach()

  it('wait for a device that was online before the restart instead of answering DEVICE_OFFLINE', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-grace-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    const config = { ...defaultGatewayConfig(), dataDir: dir }
    config.http = { ...config.http, enabled: true, port: 0 }
    const first = await startGateway({ config, port: 0, logger: quiet })
    const port = Number(new URL(first.broker.url).port)
    const device = createRuntime({ bridge: createMqttBridge({ url: first.broker.url, deviceId: 'back-1', logger: quiet, reconnect: { initialMs: 500, maxMs: 1_000 } }), services: [echoService()], logger: quiet })
    cleanup(() => device.stop({ drainMs: 100 }))
    await device.start({ waitForBroker: true })
    await until(() => first.registry.get('back-1')?.online === true, 10_000)
    await first.close()

    const second = await startGateway({ config, port, logger: quiet })
    cleanup(() => second.close())
    expect(second.registry.get('back-1')?.online).toBe(false)
    const call = async (id: string): Promise<{ status: number; body: unknown }> => {
      const res = await fetch(`${second.http!.url}/devices/${id}/commands/echo/1/say?timeoutMs=8000`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ text: 'are you back?' }) })
      return { status: res.status, body: await res.json() }
    }
    expect(await call('back-1')).toEqual({ status: 200, body: { result: { text: 'are you back?', device: 'back-1' } } })
    const t0 = Date.now()
    expect(await call('never-seen')).toMatchObject({ status: 404, body: { error: { code: 'DEVICE_UNKNOWN' } } })
    expect(Date.now() - t0).toBeLessThan(2_000)
  }, 60_000)
})
