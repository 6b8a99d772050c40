// A command that names no device (`POST /commands/<service>/<version>/<command>`) goes to a live
// device that announces it: a real gateway (in process, port 0, a data folder) and plain MQTT
// clients as devices (presence and replies written by hand), called over HTTP as a cloud caller
// would. Who runs a command comes from the registry's index, kept as presences change services,
// go offline, come back, and across a restart of the gateway on the same data folder.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import mqtt, { type MqttClient } from 'mqtt'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { defaultGatewayConfig } from '../../gateway/config/gateway-config.js'
import { startGateway, type Gateway } from '../../gateway/index.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { FIELD, presenceSlots, rawDecoder, rawFrame, replySlots } from '../helpers/raw-wire.js'
import { until } from '../helpers/wait.js'

const quiet = pino({ level: 'silent' })

interface Answer {
  status: number
  result?: { device: string }
  error?: { code: string; message: string }
}

describe('commands that name no device', () => {
  const cleanup = cleanupAfterEach()

  const gateway = async (dataDir: string): Promise<Gateway> => {
    const config = defaultGatewayConfig()
    config.dataDir = dataDir
    config.http.enabled = true
    config.http.port = 0
    const gw = await startGateway({ config, port: 0, logger: quiet })
    cleanup(() => gw.close())
    return gw
  }
  /** A device as a plain MQTT client: it answers every command with its id. */
  const device = async (gw: Gateway, id: string): Promise<MqttClient> => {
    const c = await mqtt.connectAsync(gw.broker.url, { clientId: id, reconnectPeriod: 0 })
    cleanup(() => c.endAsync(true))
    c.on('message', (_topic, payload) => {
      const cmd = rawDecoder.decode(payload) as unknown[]
      const replyTo = String(cmd[FIELD.replyTo])
      void c.publishAsync(`ob/${id}/rep/${replyTo}`, rawFrame(replySlots({ src: id, corr: String(cmd[FIELD.id]), replyTo, payload: { device: id } })), { qos: 1 })
    })
    await c.subscribeAsync(`ob/+/cmd/${id}/#`, { qos: 1 })
    return c
  }
  /** Publishes a device's presence: online or not, with echo@1 offering `commands`. */
  const announce = async (gw: Gateway, c: MqttClient, id: string, online: boolean, commands: string[]): Promise<void> => {
    await c.publishAsync(`ob/${id}/status`, rawFrame(presenceSlots({ src: id, online, services: [{ name: 'echo', version: '1', commands, events: [] }] })), { qos: 1, retain: true })
    await until(() => gw.registry.get(id)?.online === online && JSON.stringify(gw.registry.get(id)?.services[0]?.commands) === JSON.stringify(commands), 10_000)
  }
  const call = async (gw: Gateway, route: string, query = ''): Promise<Answer> => {
    const res = await fetch(`${gw.http!.url}/commands/${route}${query}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' })
    return { status: res.status, ...((await res.json()) as Omit<Answer, 'status'>) }
  }

  it('goes to one of the live devices that announce it; follows services changing, devices leaving and coming back, and a restart', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-any-device-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    let gw = await gateway(dir)
    const a = await device(gw, 'dev-a')
    const b = await device(gw, 'dev-b')
    await announce(gw, a, 'dev-a', true, ['say', 'other'])
    await announce(gw, b, 'dev-b', true, ['say'])

    // Both run it: the calls go to either.
    const chosen = new Set<string>()
    for (let i = 0; i < 40; i++) {
      const r = await call(gw, 'echo/1/say')
      expect(r.status, JSON.stringify(r)).toBe(200)
      chosen.add(r.result!.device)
    }
    expect([...chosen].sort()).toEqual(['dev-a', 'dev-b'])
    expect(await call(gw, 'echo/1/nope')).toMatchObject({ status: 404, error: { code: 'NO_HANDLER', message: 'service echo@1 has no command nope' } })
    expect(await call(gw, 'echo/2/say')).toMatchObject({ status: 404, error: { code: 'NO_HANDLER', message: 'no device announces service echo@2' } })

    // dev-a announces echo@1 without `say` now: only dev-b runs it; `other` only dev-a.
    await announce(gw, a, 'dev-a', true, ['other'])
    for (let i = 0; i < 10; i++) expect((await call(gw, 'echo/1/say')).result).toEqual({ device: 'dev-b' })
    expect((await call(gw, 'echo/1/other')).result).toEqual({ device: 'dev-a' })

    // dev-b goes offline: nobody live runs `say`, but a device known does.
    await announce(gw, b, 'dev-b', false, ['say'])
    expect(await call(gw, 'echo/1/say')).toMatchObject({ status: 503, error: { code: 'DEVICE_OFFLINE', message: 'every device that runs echo@1.say is offline' } })
    // Held: answered once dev-b is back.
    const held = call(gw, 'echo/1/say', '?offline=hold&timeoutMs=20000')
    await new Promise((r) => setTimeout(r, 300))
    await announce(gw, b, 'dev-b', true, ['say'])
    expect(await held).toMatchObject({ status: 200, result: { device: 'dev-b' } })

    // Offline again, then a restart on the same data folder: the devices and what they announced
    // are read back, so the call is DEVICE_OFFLINE, not NO_HANDLER, until dev-b is back.
    await announce(gw, b, 'dev-b', false, ['say'])
    await a.endAsync(true)
    await b.endAsync(true)
    await gw.close()
    gw = await gateway(dir)
    expect(await call(gw, 'echo/1/say')).toMatchObject({ status: 503, error: { code: 'DEVICE_OFFLINE' } })
    expect(await call(gw, 'echo/1/nope')).toMatchObject({ status: 404, error: { code: 'NO_HANDLER', message: 'service echo@1 has no command nope' } })
    const b2 = await device(gw, 'dev-b')
    await announce(gw, b2, 'dev-b', true, ['say'])
    expect(await call(gw, 'echo/1/say')).toMatchObject({ status: 200, result: { device: 'dev-b' } })
    // dev-a (offline, from the database) still announces `other`.
    expect(await call(gw, 'echo/1/other')).toMatchObject({ status: 503, error: { code: 'DEVICE_OFFLINE' } })
  }, 90_000)
})
