// A broker that refuses a device's login (a wrong password, a device the gateway does not know)
// is told apart from one that cannot be reached. Found from outside (helper): a wrong password was
// logged as "broker … unreachable", which sends a user looking at the network.
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createRuntime, ErrorCode, isOutpostError } from '../../runtime/index.js'
import { bareAedes } from '../helpers/bare-aedes.js'
import { caught } from '../helpers/caught.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'

describe('a login the broker refuses', () => {
  const cleanup = cleanupAfterEach()

  it('is BRIDGE_UNAVAILABLE saying the broker refused the login and what to check, not that it is unreachable', async () => {
    const broker = await bareAedes()
    cleanup(() => broker.close())
    // As a broker answers a wrong password: CONNACK 4, bad user name or password.
    broker.aedes.authenticate = (_client, _user, _password, done) => done(Object.assign(new Error('bad password'), { returnCode: 4 }) as never, false)
    const rt = createRuntime({ bridge: createMqttBridge({ url: broker.url, deviceId: 'dev-x', username: 'dev-x', password: 'wrong', reconnect: { initialMs: 50, maxMs: 100 }, logger: pino({ level: 'silent' }) }), logger: pino({ level: 'silent' }) })
    cleanup(() => rt.stop({ drainMs: 0 }))
    const err = await caught(rt.start({ waitForBroker: true }))
    expect(isOutpostError(err, ErrorCode.BRIDGE_UNAVAILABLE)).toBe(true)
    const port = new URL(broker.url).port
    expect((err as Error).message).toBe(`broker 127.0.0.1:${port} refused the login: Connection refused: Bad username or password; check the device's user and password (OUTPOST_MQTT_URL) and that the broker knows it`)
  }, 30_000)
})
