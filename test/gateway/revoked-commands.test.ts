// Cloud commands for a revoked device, with authentication on and `offline: hold`: the device can
// never log in again, so the call is DEVICE_UNKNOWN at once instead of held until its deadline,
// and a call already held for it fails as soon as the gateway sees the revocation.
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { defaultGatewayConfig } from '../../gateway/config/gateway-config.js'
import { startGateway, type Gateway } from '../../gateway/index.js'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createRuntime, type Runtime } from '../../runtime/index.js'
import { echoService } from '../fixtures/services.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { until } from '../helpers/wait.js'

const quiet = pino({ level: 'silent' })

interface Answer {
  status: number
  ms: number
  error?: { code: string; message: string; details?: Record<string, unknown> }
  result?: unknown
}

describe('cloud commands for a revoked device (auth on, offline: hold)', () => {
  const cleanup = cleanupAfterEach()

  const setup = async (): Promise<{ gw: Gateway; device: (id: string, secret: string) => Promise<Runtime>; post: (id: string) => Promise<Answer> }> => {
    const config = defaultGatewayConfig()
    config.auth.enabled = true
    config.http.enabled = true
    config.http.port = 0
    const gw = await startGateway({ config, port: 0, logger: quiet })
    cleanup(() => gw.close())
    const device = async (id: string, secret: string): Promise<Runtime> => {
      const rt = createRuntime({ bridge: createMqttBridge({ url: gw.broker.url, deviceId: id, username: id, password: secret, reconnect: { initialMs: 50, maxMs: 300 }, logger: quiet }), services: [echoService()], logger: quiet })
      cleanup(() => rt.stop({ drainMs: 100 }))
      await rt.start({ waitForBroker: true })
      await until(() => gw.registry.get(id)?.online === true, 30_000)
      return rt
    }
    // Held for up to 20 s: the old behaviour answered DEVICE_OFFLINE only then.
    const post = async (id: string): Promise<Answer> => {
      const t0 = Date.now()
      const res = await fetch(`${gw.http!.url}/devices/${id}/commands/echo/1/say?offline=hold&timeoutMs=20000`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"text":"hi"}' })
      const body = (await res.json()) as Omit<Answer, 'status' | 'ms'>
      return { status: res.status, ms: Date.now() - t0, ...body }
    }
    return { gw, device, post }
  }

  it('a device known to the gateway and then revoked: a held call is 404 DEVICE_UNKNOWN at once', async () => {
    const { gw, device, post } = await setup()
    const { secret } = gw.devices.add('thermo-1', 'device')
    await device('thermo-1', secret)
    expect(await post('thermo-1')).toMatchObject({ status: 200, result: { text: 'hi', device: 'thermo-1' } })
    gw.devices.revoke('thermo-1')
    // The watch cuts it off; its reconnects are refused.
    await until(() => gw.registry.get('thermo-1')?.online === false, 30_000)
    const answer = await post('thermo-1')
    expect(answer).toMatchObject({ status: 404, error: { code: 'DEVICE_UNKNOWN', details: { device: 'thermo-1' } } })
    expect(answer.error?.details?.revokedAt).toEqual(expect.any(Number))
    expect(answer.ms).toBeLessThan(10_000) // held, it answered only at 20 s
  }, 60_000)

  it('a call held for an offline device fails promptly when the device is revoked; rotated, it is held again and answered', async () => {
    const { gw, device, post } = await setup()
    const { secret } = gw.devices.add('thermo-2', 'device')
    const rt = await device('thermo-2', secret)
    await rt.stop({ drainMs: 100 })
    await until(() => gw.registry.get('thermo-2')?.online === false, 30_000)
    const held = post('thermo-2')
    // Let it be held (the HTTP round trip and a few polls), then revoke.
    await new Promise((r) => setTimeout(r, 500))
    const revokedAt = Date.now()
    gw.devices.revoke('thermo-2')
    const answer = await held
    expect(answer).toMatchObject({ status: 404, error: { code: 'DEVICE_UNKNOWN', details: { device: 'thermo-2' } } })
    // The revocation watch looks every 500 ms; the held call polls every 100 ms.
    expect(Date.now() - revokedAt).toBeLessThan(10_000)

    // A new secret makes it a device that can come back: held again, and answered once it is.
    const rotated = gw.devices.rotate('thermo-2')
    const again = post('thermo-2')
    await new Promise((r) => setTimeout(r, 300))
    await device('thermo-2', rotated.secret)
    expect(await again).toMatchObject({ status: 200, result: { text: 'hi', device: 'thermo-2' } })
  }, 60_000)
})
