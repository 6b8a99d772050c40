// A gateway process with device logins on, flooded from one address with wrong logins (2,000
// CONNECTs in flight, raw bytes on plain sockets), while a device logs in from another address
// with its secret and the connect timeout the runtime's bridge uses (5 s). Each check of a secret
// is a scrypt hash on Node's thread pool: the flood's checks queued ahead of the device's, and
// good logins from any address waited 5 to 12 s (the device gave up: "connack timeout").
import net from 'node:net'
import mqtt from 'mqtt'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { remainingLength } from '../helpers/mqtt-packets.js'
import { startGatewayProcess, type GatewayProcess } from './gateway-attack-process.js'

/** An MQTT 3.1.1 CONNECT with a user name and password, as bytes. */
function connectPacket(clientId: string, username: string, password: string): Buffer {
  const str = (s: string): Buffer => {
    const b = Buffer.from(s)
    return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b])
  }
  // Protocol name, level 4, flags: user name, password, clean session; keepalive 60 s.
  const body = Buffer.concat([str('MQTT'), Buffer.from([4, 0xc2, 0, 60]), str(clientId), str(username), str(password)])
  return Buffer.concat([Buffer.from([0x10]), remainingLength(body.length), body])
}

let gw: GatewayProcess

beforeAll(async () => {
  gw = await startGatewayProcess({ devices: ['good-1', 'evil'] })
}, 60_000)

afterAll(async () => {
  await gw?.stop()
}, 30_000)

describe('a flood of wrong logins from one address', () => {
  it('slows that address down, and a device from another address still logs in within its connect timeout', async () => {
    const { port } = new URL(gw.mqttUrl)
    const flood: net.Socket[] = []
    let refused = 0
    try {
      await Promise.all(
        Array.from({ length: 2_000 }, (_, i) =>
          new Promise<void>((resolve) => {
            const s = net.createConnection({ port: Number(port), host: '127.0.0.1', localAddress: '127.0.0.9' }, () => {
              s.write(connectPacket('evil', 'evil', `wrong-${i}`))
              resolve()
            })
            // CONNACK with return code 4 (bad user name or password): 20 02 00 04.
            s.on('data', (d: Buffer) => {
              if (d[0] === 0x20 && d[3] === 4) refused++
            })
            s.on('error', () => resolve())
            flood.push(s)
          }),
        ),
      )
      // The device's logins, one after the other, with the runtime bridge's connect timeout.
      for (let i = 0; i < 5; i++) {
        const c = await mqtt.connectAsync(gw.mqttUrl, { clientId: 'good-1', username: 'good-1', password: gw.secrets['good-1'], reconnectPeriod: 0, connectTimeout: 5_000 })
        await c.endAsync()
      }
      // The flood is answered too, slowly: refused, never let in.
      expect(refused).toBeGreaterThan(0)
      expect(refused).toBeLessThan(2_000)
    } finally {
      for (const s of flood) s.destroy()
    }
    // Its sockets closed, the flood's address is not locked out: the logins it left waiting are
    // dropped unchecked, and the device, from that very address, logs in.
    const fromFloodAddress = new mqtt.MqttClient(() => net.createConnection({ port: Number(port), host: '127.0.0.1', localAddress: '127.0.0.9' }), {
      clientId: 'good-1', username: 'good-1', password: gw.secrets['good-1'], reconnectPeriod: 0, connectTimeout: 20_000,
    })
    await new Promise<void>((resolve, reject) => {
      fromFloodAddress.once('connect', () => resolve())
      fromFloodAddress.once('error', reject)
    })
    await fromFloodAddress.endAsync()
  }, 120_000)
})
