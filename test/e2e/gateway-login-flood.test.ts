// A gateway process with device logins on, flooded with wrong logins (2,000 from one address, or
// from 2,000 addresses; raw CONNECT bytes on plain sockets), while a device logs in from elsewhere
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

/** Opens `n` connections, each from its own address in 127.0.10.0–127.0.(10+n/256).255 when `spread`, else from `from`, each sending a wrong CONNECT. */
async function flood(port: number, n: number, opts: { from?: string; spread?: boolean }): Promise<{ sockets: net.Socket[]; refused: () => number }> {
  const sockets: net.Socket[] = []
  let refused = 0
  await Promise.all(
    Array.from({ length: n }, (_, i) =>
      new Promise<void>((resolve) => {
        const localAddress = opts.spread === true ? `127.0.${10 + Math.floor(i / 256)}.${i % 256}` : opts.from
        const s = net.createConnection({ port, host: '127.0.0.1', localAddress }, () => {
          s.write(connectPacket('evil', 'evil', `wrong-${i}`))
          resolve()
        })
        // CONNACK with return code 4 (bad user name or password): 20 02 00 04.
        s.on('data', (d: Buffer) => {
          if (d[0] === 0x20 && d[3] === 4) refused++
        })
        s.on('error', () => resolve())
        sockets.push(s)
      }),
    ),
  )
  return { sockets, refused: () => refused }
}

/** A device's login, with the runtime bridge's connect timeout (5 s). @throws when it is not let in */
async function deviceLogin(url: string, secret: string): Promise<void> {
  const c = await mqtt.connectAsync(url, { clientId: 'good-1', username: 'good-1', password: secret, reconnectPeriod: 0, connectTimeout: 5_000 })
  await c.endAsync()
}

describe('a flood of wrong logins', () => {
  it('slows that address down, and a device from another address still logs in within its connect timeout', async () => {
    const { port } = new URL(gw.mqttUrl)
    const f = await flood(Number(port), 2_000, { from: '127.0.0.9' })
    try {
      // The device's logins, one after the other, with the runtime bridge's connect timeout.
      for (let i = 0; i < 5; i++) await deviceLogin(gw.mqttUrl, gw.secrets['good-1']!)
      // The flood is answered too, slowly: refused, never let in.
      expect(f.refused()).toBeGreaterThan(0)
      expect(f.refused()).toBeLessThan(2_000)
    } finally {
      for (const s of f.sockets) s.destroy()
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

  it('from 2,000 addresses at once: a device that logged in from its address before still logs in within its connect timeout', async () => {
    const { port } = new URL(gw.mqttUrl)
    // Its address is known for a login that succeeded (the test before, or this one).
    await deviceLogin(gw.mqttUrl, gw.secrets['good-1']!)
    const f = await flood(Number(port), 2_000, { spread: true })
    try {
      for (let i = 0; i < 5; i++) await deviceLogin(gw.mqttUrl, gw.secrets['good-1']!)
      expect(f.refused()).toBeGreaterThan(0)
    } finally {
      for (const s of f.sockets) s.destroy()
    }
  }, 120_000)

  it('a device from an address with one failure is not kept out by a flood from other addresses with failures', async () => {
    const { port } = new URL(gw.mqttUrl)
    const login = (from: string, password: string): Promise<number | undefined> =>
      new Promise((resolve) => {
        const c = new mqtt.MqttClient(() => net.createConnection({ port: Number(port), host: '127.0.0.1', localAddress: from }), {
          clientId: 'good-1', username: 'good-1', password, reconnectPeriod: 0, connectTimeout: 5_000,
        })
        c.once('connect', () => void c.endAsync().then(() => resolve(undefined)))
        c.once('error', (err) => {
          c.end(true)
          resolve((err as { code?: number }).code ?? -1)
        })
      })
    // One wrong secret from .60 (an old secret tried once): that address has a failure now.
    expect(await login('127.0.0.60', 'not-the-secret')).toBe(4)
    // Wrong logins from ten other addresses, each of which soon has failures too: they waited in
    // one line with .60, each holding its place through its refusal's delay.
    const floods = await Promise.all(Array.from({ length: 10 }, (_, i) => flood(Number(port), 40, { from: `127.0.0.${70 + i}` })))
    try {
      for (let i = 0; i < 3; i++) expect(await login('127.0.0.60', gw.secrets['good-1']!)).toBeUndefined()
    } finally {
      for (const f of floods) for (const s of f.sockets) s.destroy()
    }
  }, 120_000)
})
