// The gateway in this process, with a real broker on a real port and a logger the test reads.
import mqtt from 'mqtt'
import { pino, type Logger } from 'pino'
import { describe, expect, it } from 'vitest'
import { startMqttBroker } from '../../gateway/broker/mqtt-broker.js'
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
})
