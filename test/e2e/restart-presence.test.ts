// A restarted device must not be cut off from the others (issue 11). Real device processes over
// a real broker: a caller restarted with SIGTERM and with SIGKILL comes back with its old broker
// session and must still learn who is alive (the retained presence); a serving device that
// restarts is answered for again, and while it is away its callers hear SERVICE_UNREACHABLE,
// never NO_HANDLER (that code means nobody declares the service).
import { randomBytes } from 'node:crypto'
import mqtt from 'mqtt'
import { beforeAll, describe, expect, it } from 'vitest'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { freshAedes } from '../helpers/aedes.js'
import { buildHelperProcess } from '../helpers/processes.js'
import { startPresenceDevice, type DeviceProcess } from '../helpers/presence-device.js'
import { until } from '../helpers/wait.js'

const MOSQUITTO_URL = process.env.OUTPOST_MOSQUITTO_URL ?? 'mqtt://127.0.0.1:1883'

const brokers: { name: string; url(): Promise<{ url: string; close(): Promise<void> }> }[] = [
  {
    name: 'aedes',
    url: async () => {
      const b = await freshAedes()
      return { url: b.url, close: () => b.close() }
    },
  },
  // Mosquitto outlives the test: device ids and the topic prefix are unique to the run, and the
  // sessions and retained presence the run made are cleared at the end.
  { name: 'mosquitto', url: async () => ({ url: MOSQUITTO_URL, close: async () => {} }) },
]

describe.each(brokers)('a device restarted over $name', (broker) => {
  const cleanup = cleanupAfterEach()
  let script: string
  beforeAll(async () => {
    script = await buildHelperProcess('presence-device')
  })

  /** A broker, a unique topic prefix and device ids, and a way to start device processes on them. */
  const setUp = async (): Promise<{ start(id: string, role: 'serve' | 'call'): DeviceProcess; caller: string; server: string }> => {
    const run = randomBytes(4).toString('hex')
    const prefix = `ob-${run}`
    const caller = `caller-${run}`
    const server = `echo-${run}`
    const b = await broker.url()
    cleanup(() => b.close())
    // Runs after every process of the test has exited (cleanups run last registered, first).
    cleanup(() => forgetOnBroker(b.url, prefix, [caller, server]))
    const start = (id: string, role: 'serve' | 'call'): DeviceProcess => startPresenceDevice(script, b.url, id, role, prefix, cleanup)
    return { start, caller, server }
  }

  const successes = (p: DeviceProcess, from = 0): number => p.outcomes.slice(from).filter((o) => o.ok).length

  it('calls the other device successfully again after the caller is restarted with SIGTERM, then with SIGKILL', async () => {
    const { start, caller, server } = await setUp()
    const echo = start(server, 'serve')
    await until(() => echo.ready, 20_000)
    let calling = start(caller, 'call')
    await until(() => successes(calling) >= 3, 20_000)

    for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
      await calling.kill(signal)
      // The new process finds its old session on the broker (the subscriptions are still there).
      calling = start(caller, 'call')
      await until(() => calling.outcomes.length >= 3, 40_000)
      // Every call of the restarted process reaches the server: it knows the server is alive.
      expect(calling.outcomes.slice(0, 3), `after ${signal}`).toEqual([
        { ok: true, device: server },
        { ok: true, device: server },
        { ok: true, device: server },
      ])
    }
  }, 120_000)

  it('answers again once the serving device is back from SIGTERM and from SIGKILL; meanwhile calls fail with SERVICE_UNREACHABLE', async () => {
    const { start, caller, server } = await setUp()
    let echo = start(server, 'serve')
    await until(() => echo.ready, 20_000)
    const calling = start(caller, 'call')
    await until(() => successes(calling) >= 3, 20_000)

    for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
      await echo.kill(signal)
      const away = calling.outcomes.length
      // Known from before but not live now: the call is refused as unreachable, and may be retried.
      await until(() => calling.outcomes.slice(away).some((o) => !o.ok && o.code === 'SERVICE_UNREACHABLE'), 40_000)
      echo = start(server, 'serve')
      await until(() => echo.ready, 20_000)
      const back = calling.outcomes.length
      await until(() => successes(calling, back) >= 3, 40_000)
    }
    const codes = new Set(calling.outcomes.flatMap((o) => (o.ok ? [] : [o.code])))
    // A call that was in flight when the server died may time out; nothing says "nobody serves echo".
    expect([...codes].filter((c) => c !== 'SERVICE_UNREACHABLE' && c !== 'TIMEOUT')).toEqual([])
  }, 120_000)
})

/** Clears what a run left on the broker: the devices' persistent sessions and their retained presence. */
async function forgetOnBroker(url: string, prefix: string, devices: string[]): Promise<void> {
  for (const id of devices) {
    // A clean session with the same client id discards the stored one [MQTT-3.1.2-6].
    const c = await mqtt.connectAsync(url, { clientId: id, clean: true, reconnectPeriod: 0 })
    // An empty retained message removes the retained presence [MQTT-3.3.1-10].
    await c.publishAsync(`${prefix}/${id}/status`, Buffer.alloc(0), { qos: 1, retain: true })
    await c.endAsync()
  }
}
