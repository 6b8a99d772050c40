// Outside test (issue 14): a gateway process forwarding device events to NATS JetStream is
// killed with SIGKILL 30 times at random moments while device processes keep publishing, and
// started again each time on the same data folder. Every event the devices emitted must be in
// the JetStream stream, each once (the devices' outboxes keep an event until the gateway has it
// on disk; the forward queue keeps it until JetStream confirmed it; Nats-Msg-Id dedupes re-sends).
import path from 'node:path'
import { build } from 'esbuild'
import { describe, expect, it } from 'vitest'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { jetstreamForward } from '../helpers/jetstream-forward.js'
import { startProcess, type TestProcess } from '../helpers/device-process.js'
import { buildHelperProcess } from '../helpers/processes.js'
import { freePort } from '../helpers/wait.js'

const DEVICES = 3
const PER_DEVICE = 3_000
const TOTAL = DEVICES * PER_DEVICE
const KILLS = 30
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

describe('forwarding across kill -9 of the gateway', () => {
  const cleanup = cleanupAfterEach()

  it(`loses no event across ${KILLS} SIGKILLs of the gateway; JetStream holds each once`, async () => {
    const { stream, dir, nc, jsm, forward } = await jetstreamForward(cleanup, { stream: 'FWD_KILL_', subject: 'fwdkill', dir: 'outpost-fwd-kill9-' })
    const gatewayScript = path.resolve('test/e2e/chaos/.build/gateway-kill9-process.mjs')
    await build({ entryPoints: ['test/e2e/gateway-kill9-process.ts'], outfile: gatewayScript, bundle: true, platform: 'node', format: 'esm', packages: 'external', logLevel: 'silent' })
    const port = await freePort()
    const url = `mqtt://127.0.0.1:${port}`
    let gateway: TestProcess | undefined
    const start = async (): Promise<void> => {
      gateway = startProcess(gatewayScript, [], { DATA_DIR: path.join(dir, 'gw'), PORT: String(port), FORWARD: JSON.stringify(forward) })
      await gateway.waitFor('READY', 60_000)
    }
    cleanup(() => gateway?.kill())
    await start()

    const script = await buildHelperProcess('event-device')
    const devices: TestProcess[] = []
    for (let i = 0; i < DEVICES; i++) {
      const p = startProcess(script, [path.join(dir, `meter-${i}.db`), url, `meter-${i}`, String(PER_DEVICE), '25', '10'], {})
      cleanup(() => p.kill())
      devices.push(p)
    }
    const stored = async (): Promise<number> => (await jsm.streams.info(stream).catch(() => undefined))?.state.messages ?? 0
    // Kills spread over the stream: at random moments, each after some progress.
    for (let k = 0; k < KILLS; k++) {
      const before = await stored()
      const progress = before + 50 + Math.floor(Math.random() * 200)
      await sleep(Math.random() * 150)
      let reached = false
      const end = Date.now() + 15_000
      while (!reached && Date.now() < end) {
        reached = (await stored()) >= Math.min(progress, TOTAL)
        if (!reached) await sleep(20)
      }
      await gateway!.kill('SIGKILL')
      await start()
    }
    for (const d of devices) await d.waitFor('drained', 120_000)
    let last = -1
    for (let i = 0; i < 600; i++) {
      const n = await stored()
      if (n === TOTAL && n === last) break
      last = n
      await sleep(200)
    }
    // Each event once: the stream counts distinct Nats-Msg-Ids within the duplicate window.
    expect(await stored()).toBe(TOTAL)
    // And every reading of every device is there.
    const seen = new Set<string>()
    const js = (await import('@nats-io/jetstream')).jetstream(nc)
    const consumer = await js.consumers.get(stream)
    const msgs = await consumer.fetch({ max_messages: TOTAL, expires: 10_000 })
    const { createEnvelopeCodec } = await import('../../runtime/wire/codec.js')
    const codec = createEnvelopeCodec()
    for await (const m of msgs) {
      const d = codec.decode(m.data)
      if (d.ok) seen.add(`${d.envelope.src}:${(d.envelope.payload as { n: number }).n}`)
      if (seen.size === TOTAL) break
    }
    const missing: string[] = []
    for (let i = 0; i < DEVICES; i++) for (let n = 1; n <= PER_DEVICE; n++) if (!seen.has(`meter-${i}:${n}`)) missing.push(`meter-${i}:${n}`)
    expect(missing.slice(0, 20)).toEqual([])
  }, 600_000)
})
