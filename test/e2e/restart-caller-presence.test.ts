// A caller restarted while the device it calls is away must still hear SERVICE_UNREACHABLE, not
// NO_HANDLER (issue 11): the offline presence a device leaves on the broker (its last will after
// SIGKILL, its goodbye after SIGTERM) names the services it declares, so a fresh process knows
// them. Real device processes over a real aedes broker.
import { randomBytes } from 'node:crypto'
import { beforeAll, describe, expect, it } from 'vitest'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { freshAedes } from '../helpers/aedes.js'
import { buildHelperProcess } from '../helpers/processes.js'
import { startPresenceDevice, type DeviceProcess } from '../helpers/presence-device.js'
import { until } from '../helpers/wait.js'

describe('a caller restarted while the serving device is away', () => {
  const cleanup = cleanupAfterEach()
  let script: string
  beforeAll(async () => {
    script = await buildHelperProcess('presence-device')
  })

  it.each(['SIGTERM', 'SIGKILL'] as const)('hears SERVICE_UNREACHABLE, not NO_HANDLER, after the server was stopped with %s', async (signal) => {
    const run = randomBytes(4).toString('hex')
    const prefix = `ob-${run}`
    const broker = await freshAedes()
    cleanup(() => broker.close())
    const start = (id: string, role: 'serve' | 'call'): DeviceProcess => startPresenceDevice(script, broker.url, id, role, prefix, cleanup)

    const server = `display-${run}`
    const echo = start(server, 'serve')
    await until(() => echo.ready, 20_000)
    let calling = start(`thermo-${run}`, 'call')
    await until(() => calling.outcomes.filter((o) => o.ok).length >= 3, 20_000)

    await echo.kill(signal)
    // The running caller knew the server: unreachable (after SIGKILL the broker sends the will once the keepalive runs out).
    const away = calling.outcomes.length
    await until(() => calling.outcomes.slice(away).some((o) => !o.ok && o.code === 'SERVICE_UNREACHABLE'), 90_000)

    // A fresh process of the caller has only the retained offline presence of the server to go by.
    await calling.kill('SIGTERM')
    calling = start(`thermo-${run}`, 'call')
    await until(() => calling.outcomes.length >= 2, 40_000)
    expect(calling.outcomes.slice(0, 2)).toEqual([
      { ok: false, code: 'SERVICE_UNREACHABLE' },
      { ok: false, code: 'SERVICE_UNREACHABLE' },
    ])
  }, 180_000)
})
