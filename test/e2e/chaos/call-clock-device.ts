// Helper device for the call-deadline clock-step test. Two roles over a real broker:
// - `serve` hosts the `stall` service: `hang` never answers (its handler waits forever and
//   ignores its abort signal, so no reply ever comes back: only the caller's own deadline can end
//   the call), `ping` answers at once.
// - `call` hosts nothing and calls `stall` when told on stdin: `hang <n> <timeoutMs>` or
//   `ping <n> <timeoutMs>`. It prints {"ev":"calling",…} just before the call and
//   {"ev":"settled","cmd","n","ok","code","elapsedMs","wall"} when the call settles: elapsedMs
//   on performance.now (real time, whatever Date says), wall what Date.now() says then.
// Both print {"ev":"ready"} once connected, and the server {"ev":"hung","n"} when `hang` runs.
// The caller is meant to run with the clock-shift preload (Date offset from a file), as in
// clock-jumps.test.ts. Usage: call-clock-device.ts <url> <device id> <serve|call>
import { createInterface } from 'node:readline'
import * as v from 'valibot'
import { createMqttBridge } from '../../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createRuntime, defineContract, defineService } from '../../../runtime/index.js'

const [url, deviceId, role] = process.argv.slice(2) as [string, string, 'serve' | 'call']

const stallContract = defineContract({
  name: 'stall',
  version: '1',
  commands: {
    hang: { payload: v.object({ n: v.number() }), result: v.object({}) },
    ping: { payload: v.object({ n: v.number() }), result: v.object({ n: v.number(), device: v.string() }) },
  },
})

const out = (o: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(o)}\n`)

const stallService = defineService(stallContract, {
  commands: {
    hang: ({ n }) => {
      out({ ev: 'hung', n })
      return new Promise<Record<string, never>>(() => {})
    },
    ping: ({ n }) => ({ n, device: deviceId }),
  },
})

const rt = createRuntime({
  bridge: createMqttBridge({ url, deviceId, reconnect: { initialMs: 50, maxMs: 300 } }),
  services: role === 'serve' ? [stallService] : [],
  // Generous on a loaded machine: a first call waits this long for the server's presence.
  discoveryWaitMs: 5_000,
})
await rt.start({ waitForBroker: true })
out({ ev: 'ready' })

if (role === 'call') {
  const stall = rt.client(stallContract)
  createInterface({ input: process.stdin }).on('line', (line) => {
    const [verb, a, b] = line.trim().split(/\s+/)
    if (verb !== 'hang' && verb !== 'ping') return
    const n = Number(a)
    const timeoutMs = Number(b)
    out({ ev: 'calling', cmd: verb, n })
    const t0 = performance.now()
    const elapsed = (): number => Math.round(performance.now() - t0)
    stall[verb]({ n }, { timeoutMs }).then(
      () => out({ ev: 'settled', cmd: verb, n, ok: true, elapsedMs: elapsed(), wall: Date.now() }),
      (err: unknown) => out({ ev: 'settled', cmd: verb, n, ok: false, code: (err as { code?: string }).code ?? 'UNKNOWN', elapsedMs: elapsed(), wall: Date.now() }),
    )
  })
}
