// Events that reach a device while it stops gracefully (SIGTERM: the runtime waits for its running
// job before it disconnects) were acknowledged to the broker and dropped: no subscription call, no
// job, and the broker never sent them again, though the README promises events at least once and a
// bound event acknowledged only after its job is committed. Now they are left unacknowledged and
// the broker sends them again to the device's next start. A plain MQTT client publishes numbered
// events (QoS 1) every 50 ms while the device is stopped and started again three times.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import mqtt from 'mqtt'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { MqttBroker } from '../../gateway/broker/mqtt-broker.js'
import { createEnvelopeCodec } from '../../runtime/wire/codec.js'
import { freshAedes } from '../helpers/aedes.js'
import { buildHelperProcess } from '../helpers/processes.js'
import { until } from '../helpers/wait.js'

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

describe('events that arrive while a device stops', () => {
  let dir: string
  let script: string
  let broker: MqttBroker
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'outpost-stop-window-'))
    script = await buildHelperProcess('stop-listener')
    broker = await freshAedes()
  })
  // Whatever a failing test left running is killed.
  const children: ChildProcess[] = []
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
    await broker.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('are not acknowledged and dropped: the next start gets them, as a subscription call and as a job', async () => {
    let out = ''
    const start = async (): Promise<ChildProcess> => {
      const child = spawn(process.execPath, [script, path.join(dir, 'device.db'), broker.url], { stdio: ['ignore', 'pipe', 'inherit'] })
      children.push(child)
      const before = out.split('ready\n').length
      child.stdout!.on('data', (d: Buffer) => void (out += d.toString()))
      await until(() => out.split('ready\n').length > before, 20_000)
      return child
    }
    // Started once before anything is published: its session on the broker is what keeps events for it.
    let device = await start()
    const codec = createEnvelopeCodec()
    const pub = await mqtt.connectAsync(broker.url, { clientId: 'stop-a', reconnectPeriod: 0 })
    let n = 0
    let publishing = true
    const sent = (async () => {
      while (publishing) {
        const frame = codec.encode({ v: 1, kind: 'event', id: `ev-${n}`, src: 'stop-a', inst: 'a', at: Date.now(), service: 'prod', version: '1', name: 'tick', payload: { n } })
        await pub.publishAsync('ob/stop-a/evt/prod/1/tick', Buffer.from(frame), { qos: 1 })
        n++
        await sleep(50)
      }
    })()
    for (let k = 0; k < 3; k++) {
      await sleep(600)
      const exited = new Promise<number | null>((r) => device.once('exit', (code) => r(code)))
      device.kill('SIGTERM')
      expect(await exited).toBe(0)
      device = await start()
    }
    publishing = false
    await sent
    await pub.endAsync()
    const seen = (tag: string): Set<number> => new Set([...out.matchAll(new RegExp(`^${tag} (\\d+)$`, 'gm'))].map((m) => Number(m[1])))
    await until(() => seen('S').size === n && seen('J').size === n, 30_000).catch(() => undefined)
    const missing = (tag: string): number[] => Array.from({ length: n }, (_, i) => i).filter((i) => !seen(tag).has(i))
    expect({ subscription: missing('S'), jobs: missing('J') }).toEqual({ subscription: [], jobs: [] })
    device.kill('SIGTERM')
    await new Promise((r) => device.once('exit', r))
  }, 120_000)
})
