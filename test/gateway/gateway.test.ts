// The gateway in this process, with a real broker on a real port and a logger the test reads.
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import mqtt from 'mqtt'
import { pino, type Logger } from 'pino'
import { describe, expect, it } from 'vitest'
import { startMqttBroker } from '../../gateway/broker/mqtt-broker.js'
import { defaultGatewayConfig } from '../../gateway/config/gateway-config.js'
import { startGateway } from '../../gateway/index.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { until } from '../helpers/wait.js'

type Line = Record<string, unknown>

describe('gateway', () => {
  const cleanup = cleanupAfterEach()
  const logged = (): { lines: Line[]; logger: Logger } => {
    const lines: Line[] = []
    return { lines, logger: pino({ level: 'debug', base: { device: 'gateway' } }, { write: (s: string) => void lines.push(JSON.parse(s) as Line) }) }
  }
  /** Binds `port` as soon as it is free; the returned server holds it (and hangs up on whoever connects: the gateway's own monitor tries). */
  const holdPort = async (port: number): Promise<net.Server> => {
    for (;;) {
      const s = net.createServer((socket) => socket.destroy())
      const ok = await new Promise<boolean>((r) => {
        s.once('error', () => r(false))
        s.listen(port, '127.0.0.1', () => r(true))
      })
      if (ok) return s
      await new Promise((r) => setTimeout(r, 20))
    }
  }
  const cannot = (lines: Line[]): Line[] => lines.filter((l) => String(l.msg).startsWith('broker cannot take its port back'))

  it('after a drill, takes its port back once another process lets go of it, saying so once, and never rejects', async () => {
    const { lines, logger } = logged()
    const gw = await startGateway({ port: 0, logger, clientLogIntervalMs: 600_000, rebindMaxMs: 200 })
    cleanup(() => gw.close())
    const port = gw.broker.port
    let settled = false
    const drill = gw.interrupt(300).then(() => void (settled = true))
    const holder = await holdPort(port)
    // Tries fail while the port is held (each backoff at most 200 ms); the count says so, one line says it.
    await until(() => cannot(lines).length === 1, 30_000)
    expect(cannot(lines)[0]).toMatchObject({ level: 40, code: 'PORT_IN_USE', port })
    expect(settled).toBe(false)
    await new Promise<void>((r) => holder.close(() => r()))
    await drill
    expect(cannot(lines)).toHaveLength(1)
    expect(gw.broker.port).toBe(port)
    expect(lines.some((l) => l.msg === 'broker back')).toBe(true)
    const c = await mqtt.connectAsync(gw.broker.url, { clientId: 'after-drill', reconnectPeriod: 0 })
    await c.endAsync()
  }, 60_000)

  it("keeps its own client id with device logins off: another client under it is refused (CONNACK 2), and the gateway's session stays", async () => {
    const { lines, logger } = logged()
    const gw = await startGateway({ port: 0, logger })
    cleanup(() => gw.close())
    // A plain client, as a device run with OUTPOST_DEVICE_ID=gateway: it took the gateway's
    // session, and the gateway took it back, in turns, for as long as both ran.
    const sub = async (id: string): Promise<string> => {
      const r = await promisify(execFile)('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(gw.broker.port), '-i', id, '-t', 'x', '-d', '-W', '1'], { timeout: 10_000 }).catch((e: { stdout: string; stderr: string }) => e)
      return r.stdout + r.stderr
    }
    for (let i = 0; i < 3; i++) expect(await sub('gateway')).toContain('CONNACK (2)')
    expect(await sub('another')).toContain('CONNACK (0)')
    // The gateway's own client was never taken over (its bridge says so when it is).
    expect(lines.filter((l) => String(l.msg).includes('keeps closing the connection'))).toEqual([])
    expect(lines.filter((l) => l.msg === 'client error').map((l) => l.err)).toEqual(["login refused: client id gateway is the gateway's own"])
    expect((gw.broker.aedes as unknown as { clients: Record<string, { connected: boolean } | undefined> }).clients.gateway?.connected).toBe(true)
  }, 30_000)

  it('stops trying to take its port back when it is closed', async () => {
    const { lines, logger } = logged()
    const gw = await startGateway({ port: 0, logger, rebindMaxMs: 200 })
    const port = gw.broker.port
    const drill = gw.interrupt(100)
    const holder = await holdPort(port)
    cleanup(() => new Promise<void>((r) => holder.close(() => r())))
    await until(() => cannot(lines).length === 1, 30_000)
    await gw.close()
    await drill
    expect(lines.some((l) => l.msg === 'broker back')).toBe(false)
  }, 60_000)

  it('logs clients cut off for oversized packets once a minute, with a count, the client and the size', async () => {
    const { lines, logger } = logged()
    const gw = await startGateway({ port: 0, logger, clientLogIntervalMs: 600_000 })
    cleanup(() => gw.close())
    const big = Buffer.alloc(1024 * 1024 + 10)
    for (let i = 0; i < 3; i++) {
      const c = await mqtt.connectAsync(gw.broker.url, { clientId: 'big-sender', reconnectPeriod: 0 })
      const closedConn = new Promise<void>((r) => c.stream.once('close', () => r()))
      c.publish('ob/big-sender/evt/x/1/y', big, { qos: 0 })
      await closedConn
      c.end(true)
    }
    await until(() => gw.broker.oversizedPackets === 3, 30_000)
    const about = lines.filter((l) => String(l.msg).startsWith('client sent a packet over the size limit'))
    expect(about).toHaveLength(1)
    expect(about[0]).toMatchObject({ level: 40, client: 'big-sender', count: 1, packetType: 3 })
    expect(Number(about[0]!.bytes)).toBeGreaterThan(1024 * 1024)
  }, 60_000)

  it('gives a broker bound to an IPv6 address a URL with the address in brackets', async () => {
    // ::1 is there on this machine (checked when this test was written); a machine without IPv6 fails here, not silently.
    const broker = await startMqttBroker({ host: '::1', port: 0 })
    cleanup(() => broker.close())
    expect(broker.url).toBe(`mqtt://[::1]:${broker.port}`)
    expect(new URL(broker.url).port).toBe(String(broker.port))
    const c = await mqtt.connectAsync(broker.url, { clientId: 'v6', reconnectPeriod: 0 })
    await c.endAsync()
  }, 30_000)

  it('runs on an IPv6 address, its own monitor connected over it', async () => {
    const gw = await startGateway({ host: '::1', port: 0, logger: pino({ level: 'silent' }) })
    cleanup(() => gw.close())
    expect(gw.broker.url).toBe(`mqtt://[::1]:${gw.broker.port}`)
    // start() resolves only once connected (the gateway waits for its broker); its presence then goes out over ::1.
    await until(() => gw.runtime.stats().bridge.published > 0)
  }, 30_000)

  it('a start that fails on a taken MQTT port lets go of its data folder: the next start there works', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-gateway-port-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    const taken = await holdPort(0)
    cleanup(() => new Promise((r) => taken.close(r)))
    const config = { ...defaultGatewayConfig(), dataDir: dir, persistence: 'sqlite' as const }
    const port = (taken.address() as net.AddressInfo).port
    const err = await startGateway({ config, port, logger: logged().logger }).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(err).toMatchObject({ code: 'PORT_IN_USE' })
    // gateway.db and broker.db were closed (their locks released): not STORE_IN_USE.
    const gw = await startGateway({ config, port: 0, logger: logged().logger })
    cleanup(() => gw.close())
    expect(gw.broker.port).toBeGreaterThan(0)
  }, 30_000)
})
