// Two processes that connect with one client id take the session from each other: the broker
// closes the older connection as soon as the newer one is accepted [MQTT-3.1.4-2]. A bridge that
// keeps losing its connection right after connecting must back off, not storm the broker, and
// say once what is going on.
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import type { Bridge } from '../../runtime/index.js'
import { startMqttBroker } from '../../gateway/broker/mqtt-broker.js'
import { freshAedes } from '../helpers/aedes.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { until } from '../helpers/wait.js'

describe('an MQTT bridge taken over by another client with its client id', () => {
  const cleanup = cleanupAfterEach()

  it('does not take a broker that went down twice in a few seconds for another client with its id', async () => {
    let broker = await freshAedes()
    const port = Number(new URL(broker.url).port)
    cleanup(() => broker.close())
    const lines: { msg: string }[] = []
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(JSON.parse(chunk.toString()) as { msg: string })
        done()
      },
    })
    const b = createMqttBridge({ url: broker.url, deviceId: 'alone', reconnect: { initialMs: 50, maxMs: 200 }, logger: pino({ level: 'warn' }, sink) })
    cleanup(() => b.close({ drainMs: 50 }))
    await b.connect()
    // Down and back three times, each connection lasting well under the 10 s that count as stable.
    for (let k = 0; k < 3; k++) {
      await broker.close()
      await new Promise((r) => setTimeout(r, 300))
      broker = await startMqttBroker({ port })
      await until(() => b.status.type === 'connected', 10_000)
    }
    expect(lines.filter((l) => /same client id/.test(l.msg))).toEqual([])
  }, 60_000)

  it('backs off exponentially instead of reconnecting at once, and says so in one log line', async () => {
    const broker = await freshAedes()
    cleanup(() => broker.close())
    let connects = 0
    broker.aedes.on('client', (c) => {
      if (c.id === 'twin') connects++
    })
    const cap = 2_000
    const delays: number[] = []
    // Each bridge logs to its own lines, as two processes would.
    const make = (lines: { reason?: string; msg: string }[]): Bridge => {
      const sink = new Writable({
        write(chunk: Buffer, _enc, done) {
          lines.push(JSON.parse(chunk.toString()) as { reason?: string; msg: string })
          done()
        },
      })
      const b = createMqttBridge({ url: broker.url, deviceId: 'twin', reconnect: { initialMs: 50, maxMs: cap }, logger: pino({ level: 'warn' }, sink) })
      b.onStatus((s) => {
        if (s.type === 'reconnecting') delays.push(s.delayMs)
      })
      cleanup(() => b.close({ drainMs: 50 }))
      return b
    }
    const linesOfFirst: { reason?: string; msg: string }[] = []
    const linesOfSecond: { reason?: string; msg: string }[] = []
    const first = make(linesOfFirst)
    await first.connect()
    const second = make(linesOfSecond)
    void second.connect().catch(() => {})

    // Each connection closed right after it was accepted counts as a failed attempt: the delays
    // grow towards the cap instead of starting again from 50 ms after every connect.
    await until(() => delays.some((d) => d >= cap / 2), 30_000)
    const grown = delays.length
    await until(() => delays.length >= grown + 4, 30_000)
    expect(delays.slice(grown).every((d) => d >= cap / 4)).toBe(true)
    // Bounded: a handful of connections, not hundreds, while the two fight over the session.
    expect(connects).toBeLessThan(40)

    for (const lines of [linesOfFirst, linesOfSecond]) {
      const told = lines.filter((l) => l.reason === 'taken-over')
      expect(told).toHaveLength(1)
      expect(told[0]!.msg).toContain('twin')
    }
  }, 90_000)
})
