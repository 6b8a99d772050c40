// The gateway's broker: its listeners (TCP, TLS, WebSocket), its limits, and what it does with
// ports already taken. Real sockets, plain MQTT.js clients, a device runtime over mqtts://.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import mqtt from 'mqtt'
import { describe, expect, it } from 'vitest'
import { startMqttBroker, type MqttBrokerOptions } from '../../gateway/broker/mqtt-broker.js'
import { createMqttBridge } from '../../runtime/bridges/mqtt/mqtt-bridge.js'
import { createRuntime, ErrorCode, isOutpostError } from '../../runtime/index.js'
import { echoContract, echoService } from '../fixtures/services.js'
import { caught } from '../helpers/caught.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { until } from '../helpers/wait.js'

/** A self-signed certificate for localhost and 127.0.0.1, made by openssl in a fresh folder. */
function selfSigned(): { dir: string; certFile: string; keyFile: string; cert: Buffer } {
  const dir = mkdtempSync(path.join(tmpdir(), 'outpost-tls-'))
  const certFile = path.join(dir, 'cert.pem')
  const keyFile = path.join(dir, 'key.pem')
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore' })
  return { dir, certFile, keyFile, cert: readFileSync(certFile) }
}

/** Resolves when the connection is refused or closed before a CONNACK, with what happened. */
async function refused(url: string, clientId: string): Promise<string> {
  const c = mqtt.connect(url, { clientId, reconnectPeriod: 0, connectTimeout: 10_000 })
  try {
    return await new Promise<string>((resolve, reject) => {
      c.once('connect', () => reject(new Error(`${clientId} was let in`)))
      c.once('error', (err) => resolve(`error: ${err.message}`))
      c.once('close', () => resolve('closed'))
    })
  } finally {
    c.end(true)
  }
}

/** True once nothing accepts connections on `port`. */
const portClosed = (port: number): Promise<boolean> =>
  new Promise((r) => {
    const s = net.connect(port, '127.0.0.1')
    s.once('connect', () => {
      s.destroy()
      r(false)
    })
    s.once('error', () => r(true))
  })

describe('gateway broker', () => {
  const cleanup = cleanupAfterEach()
  const start = async (o: MqttBrokerOptions) => {
    const b = await startMqttBroker({ port: 0, ...o })
    cleanup(() => b.close())
    return b
  }

  it('refuses one connection more than maxConnections at accept, counts it, and takes new ones once a client leaves', async () => {
    const refusedLog: string[] = []
    const broker = await start({ maxConnections: 3, onRefusedConnection: (c) => refusedLog.push(c.listener) })
    const clients = []
    for (let i = 0; i < 3; i++) {
      const c = await mqtt.connectAsync(broker.url, { clientId: `c${i}`, reconnectPeriod: 0 })
      cleanup(() => c.endAsync(true))
      clients.push(c)
    }
    expect(await refused(broker.url, 'one-too-many')).toBeTruthy()
    expect(broker.stats()).toMatchObject({ connections: 3, refusedConnections: 1 })
    expect(refusedLog).toEqual(['mqtt'])
    await clients[0]!.endAsync()
    await until(() => broker.stats().connections === 2, 10_000)
    const later = await mqtt.connectAsync(broker.url, { clientId: 'later', reconnectPeriod: 0 })
    cleanup(() => later.endAsync(true))
    expect(later.connected).toBe(true)
  })

  // Found from outside (helper): sockets that never send a CONNECT held every place for aedes'
  // connect timeout (30 s), and a client that opened them again as they were closed kept every
  // device off the broker (10,000 idle sockets against the default limit; a device refused at 1,
  // 10, 20 and 25 s against a limit of 50).
  it('at maxConnections, a new client takes the place of the oldest socket that never logged in (plain TCP and TLS); a client that logged in keeps its place', async () => {
    const { dir, certFile, keyFile, cert } = selfSigned()
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    const evicted: string[] = []
    const broker = await start({ maxConnections: 4, tls: { port: 0, certFile, keyFile }, onEvictedConnection: (c) => evicted.push(c.listener) })
    const first = await mqtt.connectAsync(broker.url, { clientId: 'first', reconnectPeriod: 0 })
    cleanup(() => first.endAsync(true))
    // Plain sockets (not MQTT.js) that never send anything: on the TCP listener and the TLS one (no handshake either).
    const idle: { socket: net.Socket; closed: boolean }[] = []
    for (const port of [broker.port, broker.port, broker.tls!.port]) {
      const socket = net.connect(port, '127.0.0.1')
      const one = { socket, closed: false }
      socket.on('error', () => {})
      socket.once('close', () => (one.closed = true))
      await new Promise<void>((r) => socket.once('connect', () => r()))
      cleanup(() => socket.destroy())
      idle.push(one)
    }
    await until(() => broker.stats().connections === 4, 10_000)
    // Full: a device still gets in, in place of the oldest idle socket, over TCP and over TLS.
    const device = await mqtt.connectAsync(broker.url, { clientId: 'device', reconnectPeriod: 0 })
    cleanup(() => device.endAsync(true))
    const secure = await mqtt.connectAsync(broker.tls!.url, { clientId: 'secure', reconnectPeriod: 0, ca: cert })
    cleanup(() => secure.endAsync(true))
    await until(() => idle[0]!.closed && idle[1]!.closed, 10_000)
    expect(idle[2]!.closed).toBe(false)
    expect(broker.stats()).toMatchObject({ connections: 4, evictedConnections: 2, refusedConnections: 0 })
    expect(evicted).toEqual(['mqtt', 'mqtts'])
    // The last idle one goes for the next client; after it, every place is a logged-in client's.
    const third = await mqtt.connectAsync(broker.url, { clientId: 'third', reconnectPeriod: 0 })
    cleanup(() => third.endAsync(true))
    await until(() => idle[2]!.closed, 10_000)
    expect(await refused(broker.url, 'one-too-many')).toBeTruthy()
    expect(broker.stats()).toMatchObject({ connections: 4, evictedConnections: 3, refusedConnections: 1 })
    expect([first, device, secure, third].every((c) => c.connected)).toBe(true)
  }, 30_000)

  it('lets the reserved client id in when maxConnections are taken, one connection more; anyone else on that reserve is refused at CONNECT', async () => {
    const broker = await start({ maxConnections: 2, reservedClientId: 'gateway' })
    for (let i = 0; i < 2; i++) {
      const c = await mqtt.connectAsync(broker.url, { clientId: `device-${i}`, reconnectPeriod: 0 })
      cleanup(() => c.endAsync(true))
    }
    // The reserve is for one client id: another one that gets onto it is closed at its CONNECT.
    expect(await refused(broker.url, 'intruder')).toBeTruthy()
    expect(broker.stats()).toMatchObject({ connections: 2, refusedConnections: 1 })
    const own = await mqtt.connectAsync(broker.url, { clientId: 'gateway', reconnectPeriod: 0 })
    cleanup(() => own.endAsync(true))
    expect(own.connected).toBe(true)
    expect(broker.stats().connections).toBe(3)
    // Reserve taken: nobody else, not even the reserved id a second time.
    expect(await refused(broker.url, 'device-2')).toBeTruthy()
    expect(await refused(broker.url, 'gateway')).toBeTruthy()
    expect(broker.stats()).toMatchObject({ connections: 3, refusedConnections: 3 })
    // Once it leaves, the reserve is free again for it.
    await own.endAsync()
    await until(() => broker.stats().connections === 2, 10_000)
    const again = await mqtt.connectAsync(broker.url, { clientId: 'gateway', reconnectPeriod: 0 })
    cleanup(() => again.endAsync(true))
    expect(again.connected).toBe(true)
  })

  it('closes the connection of a client that publishes or subscribes past maxTopicLevels, and serves the others', async () => {
    const broker = await start({ maxTopicLevels: 4 })
    const sub = await mqtt.connectAsync(broker.url, { clientId: 'sub', reconnectPeriod: 0 })
    cleanup(() => sub.endAsync(true))
    await sub.subscribeAsync('a/b/+/#', { qos: 1 })
    const got: string[] = []
    sub.on('message', (t) => got.push(t))

    const deep = await mqtt.connectAsync(broker.url, { clientId: 'deep-pub', reconnectPeriod: 0 })
    cleanup(() => deep.endAsync(true))
    const deepClosed = new Promise<void>((r) => deep.once('close', () => r()))
    deep.publish('a/b/c/d/e', 'too deep', { qos: 0 })
    await deepClosed

    const deepSub = await mqtt.connectAsync(broker.url, { clientId: 'deep-sub', reconnectPeriod: 0 })
    cleanup(() => deepSub.endAsync(true))
    const deepSubClosed = new Promise<void>((r) => deepSub.once('close', () => r()))
    deepSub.subscribe('a/b/c/d/#')
    await deepSubClosed

    const pub = await mqtt.connectAsync(broker.url, { clientId: 'pub', reconnectPeriod: 0 })
    cleanup(() => pub.endAsync(true))
    await pub.publishAsync('a/b/c/d', 'four levels', { qos: 1 })
    await until(() => got.length === 1, 10_000)
    expect(got).toEqual(['a/b/c/d'])
  })

  it('serves a command to a device runtime connected with mqtts:// and a self-signed certificate, next to plain MQTT', async () => {
    const { dir, certFile, keyFile, cert } = selfSigned()
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    const broker = await start({ tls: { port: 0, certFile, keyFile } })
    expect(broker.tls?.url).toBe(`mqtts://127.0.0.1:${broker.tls!.port}`)
    const device = createRuntime({ bridge: createMqttBridge({ url: broker.tls!.url, deviceId: 'tls-dev', tls: { ca: cert } }), services: [echoService()] })
    await device.start({ waitForBroker: true })
    cleanup(() => device.stop({ drainMs: 100 }))
    const caller = createRuntime({ bridge: createMqttBridge({ url: broker.url, deviceId: 'tcp-caller' }) })
    await caller.start({ waitForBroker: true })
    cleanup(() => caller.stop({ drainMs: 100 }))
    await until(() => caller.directory.instances('echo', '1').length === 1, 10_000)
    expect(await caller.client(echoContract).say({ text: 'over TLS' })).toEqual({ text: 'over TLS', device: 'tls-dev' })

    // A client that does not trust the certificate is not let in; the broker goes on.
    expect(await refused(broker.tls!.url, 'untrusting')).toMatch(/error|closed/)
    // Plain MQTT on the TLS port: a failed handshake, nothing more.
    expect(await refused(`mqtt://127.0.0.1:${broker.tls!.port}`, 'plain-on-tls')).toMatch(/error|closed/)
    expect(await caller.client(echoContract).say({ text: 'still' })).toEqual({ text: 'still', device: 'tls-dev' })
  })

  it('delivers a QoS 0 message larger than a socket buffer to a subscriber that reads: a command result of 100 kB reaches its caller (one over 16 KiB was dropped, and every such call ran to TIMEOUT)', async () => {
    const broker = await start({})
    const sub = await mqtt.connectAsync(broker.url, { clientId: 'big-sub', reconnectPeriod: 0 })
    cleanup(() => sub.endAsync(true))
    await sub.subscribeAsync('big/q0', { qos: 0 })
    const got = new Promise<number>((r) => sub.once('message', (_t, p) => r(p.length)))
    const pub = await mqtt.connectAsync(broker.url, { clientId: 'big-pub', reconnectPeriod: 0 })
    cleanup(() => pub.endAsync(true))
    await pub.publishAsync('big/q0', Buffer.alloc(200_000, 7), { qos: 0 })
    expect(await got).toBe(200_000)
    expect(broker.stats().droppedQos0).toBe(0)

    const device = createRuntime({ bridge: createMqttBridge({ url: broker.url, deviceId: 'big-dev' }), services: [echoService()] })
    await device.start({ waitForBroker: true })
    cleanup(() => device.stop({ drainMs: 100 }))
    const caller = createRuntime({ bridge: createMqttBridge({ url: broker.url, deviceId: 'big-caller' }) })
    await caller.start({ waitForBroker: true })
    cleanup(() => caller.stop({ drainMs: 100 }))
    await until(() => caller.directory.instances('echo', '1').length === 1, 10_000)
    const text = 'x'.repeat(100_000)
    expect(await caller.client(echoContract).say({ text }, { timeoutMs: 5_000 })).toEqual({ text, device: 'big-dev' })
  })

  it('refuses TLS files it cannot read or use with INVALID_CONFIG, before listening', async () => {
    const { dir, certFile, keyFile } = selfSigned()
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    const missing = await caught(startMqttBroker({ port: 0, tls: { port: 0, certFile: path.join(dir, 'nope.pem'), keyFile } }))
    expect(isOutpostError(missing, ErrorCode.INVALID_CONFIG)).toBe(true)
    expect((missing as Error).message).toContain('nope.pem')
    const garbage = path.join(dir, 'garbage.pem')
    writeFileSync(garbage, 'not a key\n')
    const bad = await caught(startMqttBroker({ port: 0, tls: { port: 0, certFile, keyFile: garbage } }))
    expect(isOutpostError(bad, ErrorCode.INVALID_CONFIG)).toBe(true)
  })

  it('carries MQTT over WebSocket: a ws:// client publishes to a TCP client; another path is refused', async () => {
    const broker = await start({ websocket: { port: 0, path: '/mqtt' } })
    expect(broker.websocket?.url).toBe(`ws://127.0.0.1:${broker.websocket!.port}/mqtt`)
    const tcp = await mqtt.connectAsync(broker.url, { clientId: 'tcp-sub', reconnectPeriod: 0 })
    cleanup(() => tcp.endAsync(true))
    await tcp.subscribeAsync('ws/to/tcp', { qos: 1 })
    const got = new Promise<string>((r) => tcp.once('message', (_t, p) => r(p.toString())))
    const web = await mqtt.connectAsync(broker.websocket!.url, { clientId: 'ws-pub', reconnectPeriod: 0 })
    cleanup(() => web.endAsync(true))
    await web.publishAsync('ws/to/tcp', 'from a browser', { qos: 1 })
    expect(await got).toBe('from a browser')
    expect(broker.stats().connections).toBe(2)
    expect(await refused(`ws://127.0.0.1:${broker.websocket!.port}/elsewhere`, 'wrong-path')).toMatch(/error|closed/)
  })

  it('counts WebSocket and TLS connections against maxConnections with the TCP ones', async () => {
    const { dir, certFile, keyFile, cert } = selfSigned()
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    const broker = await start({ maxConnections: 2, tls: { port: 0, certFile, keyFile }, websocket: { port: 0, path: '/mqtt' } })
    const a = await mqtt.connectAsync(broker.url, { clientId: 'a', reconnectPeriod: 0 })
    cleanup(() => a.endAsync(true))
    const b = await mqtt.connectAsync(broker.websocket!.url, { clientId: 'b', reconnectPeriod: 0 })
    cleanup(() => b.endAsync(true))
    expect(await refused(broker.websocket!.url, 'c-ws')).toBeTruthy()
    const tlsRefused = mqtt.connect(broker.tls!.url, { clientId: 'c-tls', reconnectPeriod: 0, ca: cert })
    cleanup(() => tlsRefused.endAsync(true))
    await new Promise<void>((r) => tlsRefused.once('close', () => r()))
    expect(tlsRefused.connected).toBe(false)
    expect(broker.stats().refusedConnections).toBe(2)
    expect(a.connected && b.connected).toBe(true)
  })

  it('says PORT_IN_USE for each listener whose port is taken, naming it, and leaves no other listener open', async () => {
    const { dir, certFile, keyFile } = selfSigned()
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    const holder = net.createServer()
    await new Promise<void>((r) => holder.listen(0, '127.0.0.1', () => r()))
    cleanup(() => new Promise<void>((r) => holder.close(() => r())))
    const taken = (holder.address() as net.AddressInfo).port
    const tcp = await caught(startMqttBroker({ port: taken }))
    expect(isOutpostError(tcp, ErrorCode.PORT_IN_USE)).toBe(true)
    expect((tcp as { details?: unknown }).details).toMatchObject({ port: taken, listener: 'mqtt' })

    // The TCP listener binds first; when a later one fails, the earlier ones are closed again.
    const free = await (async () => {
      const s = net.createServer()
      await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()))
      const p = (s.address() as net.AddressInfo).port
      await new Promise<void>((r) => s.close(() => r()))
      return p
    })()
    const tlsTaken = await caught(startMqttBroker({ port: free, tls: { port: taken, certFile, keyFile } }))
    expect(isOutpostError(tlsTaken, ErrorCode.PORT_IN_USE)).toBe(true)
    expect((tlsTaken as { details?: unknown; message: string }).details).toMatchObject({ port: taken, listener: 'mqtts' })
    expect(await portClosed(free)).toBe(true)
    const wsTaken = await caught(startMqttBroker({ port: free, websocket: { port: taken, path: '/mqtt' } }))
    expect(isOutpostError(wsTaken, ErrorCode.PORT_IN_USE)).toBe(true)
    expect((wsTaken as Error).message).toContain('WebSocket')
    expect(await portClosed(free)).toBe(true)
    // The port is usable again: nothing was left bound.
    const ok = await start({ port: free })
    expect(ok.port).toBe(free)
  })

  it('closes every listener and every client on close()', async () => {
    const { dir, certFile, keyFile, cert } = selfSigned()
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    const broker = await startMqttBroker({ port: 0, tls: { port: 0, certFile, keyFile }, websocket: { port: 0, path: '/mqtt' } })
    const clients = [
      await mqtt.connectAsync(broker.url, { clientId: 'k-tcp', reconnectPeriod: 0 }),
      await mqtt.connectAsync(broker.tls!.url, { clientId: 'k-tls', reconnectPeriod: 0, ca: cert }),
      await mqtt.connectAsync(broker.websocket!.url, { clientId: 'k-ws', reconnectPeriod: 0 }),
    ]
    const gone = clients.map((c) => new Promise<void>((r) => c.once('close', () => r())))
    await broker.close()
    await Promise.all(gone)
    for (const port of [broker.port, broker.tls!.port, broker.websocket!.port]) expect(await portClosed(port)).toBe(true)
    await broker.close()
  })
})
