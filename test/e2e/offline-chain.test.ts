// The offline promise, end to end with a real device process and a real broker: a schedule →
// event → event-to-queue → worker → result event chain keeps running while the broker is gone,
// and once it is back every result arrives, exactly once per id, in order.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Decoder } from 'cbor-x'
import mqtt from 'mqtt'
import { describe, expect, it } from 'vitest'
import { startMqttBroker, type MqttBroker } from '../../gateway/broker/mqtt-broker.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { freePort, until } from '../helpers/wait.js'
import { buildHelperProcess } from '../helpers/processes.js'

interface Counters {
  fired: number
  completed: number
  outbox: number
}

describe('a device that loses its broker for a while', () => {
  const cleanup = cleanupAfterEach()

  it('keeps scheduling and processing offline, then delivers every result once per id, in order', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-chain-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    const script = await buildHelperProcess('chain-device')
    const port = await freePort()
    const url = `mqtt://127.0.0.1:${port}`
    let broker: MqttBroker = await startMqttBroker({ port })
    cleanup(() => broker.close())

    // A listener that decodes each result event: its message id and the occurrence it answers.
    const dec = new Decoder({ useRecords: false, mapsAsObjects: true })
    const results: { id: string; at: number; corr: string }[] = []
    const listener = await mqtt.connectAsync(url, { clientId: 'results', reconnectPeriod: 100 })
    cleanup(() => listener.endAsync(true))
    listener.on('message', (_t, buf) => {
      const a = dec.decode(buf) as unknown[]
      results.push({ id: a[2] as string, corr: a[9] as string, at: (a[16] as { output: { at: number } }).output.at })
    })
    await listener.subscribeAsync('ob/chain-1/evt/sensor/1/digest.completed', { qos: 1 })

    const device: ChildProcess = spawn(process.execPath, [script, path.join(dir, 'device.db'), url], { stdio: ['ignore', 'pipe', 'inherit'] })
    cleanup(async () => {
      if (device.exitCode === null) {
        const exited = new Promise((r) => device.once('exit', r))
        device.kill('SIGTERM')
        await exited
      }
    })
    let counters: Counters = { fired: 0, completed: 0, outbox: 0 }
    let buf = ''
    device.stdout!.on('data', (d: Buffer) => {
      buf += d.toString()
      const lines = buf.split('\n')
      buf = lines.pop()!
      if (lines.length > 0) counters = JSON.parse(lines.at(-1)!) as Counters
    })

    await until(() => results.length >= 3, 10_000)

    // The broker goes away for 2.5 s.
    await broker.close()
    await until(() => counters.outbox > 0, 5_000)
    const atOutage = { ...counters }
    await new Promise((r) => setTimeout(r, 2_500))
    // Offline, the device went on: occurrences fired, samples became jobs, jobs completed, and
    // their results wait in the outbox.
    expect(counters.fired - atOutage.fired).toBeGreaterThanOrEqual(8)
    expect(counters.completed - atOutage.completed).toBeGreaterThanOrEqual(8)
    expect(counters.outbox).toBeGreaterThanOrEqual(16) // samples and results

    // It comes back; the device is let in only once the listener has subscribed again.
    let listenerBack = false
    broker = await startMqttBroker({ port, aedes: { authenticate: (client, _u, _p, done) => done(null, client.id !== 'chain-1' || listenerBack) } })
    await until(() => listener.connected, 5_000)
    await listener.subscribeAsync('ob/chain-1/evt/sensor/1/digest.completed', { qos: 1 })
    listenerBack = true
    const lastFiredOffline = counters.fired
    await until(() => counters.outbox < 5 && counters.fired > lastFiredOffline + 3, 15_000)
    const expected = counters.completed
    await until(() => new Set(results.map((r) => r.id)).size >= expected - 2, 10_000)

    // Dropping duplicates by message id: one result per occurrence, in the order they fell due,
    // with no occurrence missing between the first and the last (nothing skipped while offline).
    const firstSeen: { at: number; corr: string }[] = []
    const ids = new Set<string>()
    for (const r of results) {
      if (ids.has(r.id)) continue
      ids.add(r.id)
      firstSeen.push(r)
    }
    const ats = firstSeen.map((r) => r.at)
    expect(new Set(ats).size).toBe(ats.length) // exactly one result per occurrence
    expect(ats).toEqual([...ats].sort((a, b) => a - b)) // in order
    for (let i = 1; i < ats.length; i++) expect(ats[i]! - ats[i - 1]!).toBe(200) // none missing
    expect(firstSeen.every((r) => r.corr === `sensor/tick/${r.at}`)).toBe(true) // correlated with its occurrence
    expect(ats.length).toBeGreaterThanOrEqual(atOutage.completed + 8)
    console.log(`offline chain: ${ats.length} results, ${results.length - ats.length} duplicates dropped, ${counters.fired - atOutage.fired} occurrences since the outage began`)
  }, 60_000)
})
