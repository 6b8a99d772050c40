// Helper device for the restart tests: `serve` hosts the echo service; `call` calls it in a loop,
// one call at a time, and prints each outcome as a JSON line ({"ok":true,"device":…} or
// {"ok":false,"code":…}). Both print {"ready":true} once started; SIGTERM stops cleanly.
// Usage: presence-device.ts <url> <device id> <serve|call> <topic prefix>
import { createMqttBridge } from '../../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createRuntime } from '../../../runtime/index.js'
import { echoContract, echoService } from '../../fixtures/services.js'

const [url, deviceId, role, topicPrefix] = process.argv.slice(2) as [string, string, 'serve' | 'call', string]

const rt = createRuntime({
  // Client id = device id, persistent session: a restarted process finds its old session on the broker.
  bridge: createMqttBridge({ url, deviceId, reconnect: { initialMs: 50, maxMs: 500 } }),
  messaging: { topicPrefix },
  services: role === 'serve' ? [echoService()] : [],
  // Generous on a loaded machine: a call waits this long for the first presence of its target.
  discoveryWaitMs: 5_000,
})

const line = (o: unknown): void => void process.stdout.write(`${JSON.stringify(o)}\n`)
let stopping = false

await rt.start({ waitForBroker: true })
line({ ready: true })

if (role === 'call') {
  const echo = rt.client(echoContract)
  void (async () => {
    while (!stopping) {
      try {
        const r = await echo.say({ text: 'ping' }, { timeoutMs: 5_000 })
        line({ ok: true, device: r.device })
      } catch (err) {
        line({ ok: false, code: (err as { code?: string }).code ?? 'UNKNOWN' })
      }
      await new Promise((r) => setTimeout(r, 100))
    }
  })()
}

process.on('SIGTERM', () => {
  stopping = true
  void rt.stop({ drainMs: 1_000 }).then(() => process.exit(0))
})
