// The gatekeeper's hooks on a real aedes broker with a real device table, for what the gateway
// cannot be driven into quickly from outside: wills an earlier broker run left in the store.
import type { EventEmitter } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import type { AedesOptions } from 'aedes'
import aedesPersistence from 'aedes-persistence'
import mqtt from 'mqtt'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { createBrokerAuth } from '../../gateway/auth/broker-auth.js'
import { startMqttBroker } from '../../gateway/broker/mqtt-broker.js'
import { DEFAULT_ROLES } from '../../gateway/config/gateway-config.js'
import { createDeviceTable } from '../../gateway/devices/device-table.js'
import { openGatewayDatabase } from '../../gateway/store/gateway-database.js'
import { cleanupAfterEach } from '../helpers/cleanups.js'
import { presenceSlots, rawDecoder, rawFrame } from '../helpers/raw-wire.js'
import { until } from '../helpers/wait.js'

const memoryPersistence = aedesPersistence as unknown as () => NonNullable<AedesOptions['persistence']> & {
  putWill(client: { id: string }, packet: object): Promise<void>
  streamWill(brokers?: object): AsyncIterable<unknown>
}

describe('broker auth: wills of an earlier broker run', () => {
  const cleanup = cleanupAfterEach()

  it("publishes a stored will that is the device's retained offline status, drops any other, and the broker goes on", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'outpost-auth-'))
    cleanup(() => rmSync(dir, { recursive: true, force: true }))
    const database = openGatewayDatabase(path.join(dir, 'gateway.db'))
    cleanup(() => database.close())
    const devices = createDeviceTable(database)
    const auth = createBrokerAuth({ devices, roles: DEFAULT_ROLES, log: pino({ level: 'silent' }), internal: new Map() })
    cleanup(() => auth.close())
    const persistence = memoryPersistence()
    // aedes looks for wills of brokers gone quiet every four heartbeats.
    const broker = await startMqttBroker({ port: 0, aedes: { persistence, heartbeatInterval: 50, ...auth.hooks } })
    cleanup(() => broker.close())
    auth.attach(broker.aedes)
    const errors: unknown[] = []
    // aedes emits 'error' when a stored will is refused with an error (its typings leave the event out).
    ;(broker.aedes as unknown as EventEmitter).on('error', (err: unknown) => errors.push(err))

    const { secret } = devices.add('reader', 'device')
    devices.add('dev-1', 'device')
    devices.add('dev-2', 'device')
    const reader = await mqtt.connectAsync(broker.url, { clientId: 'reader', username: 'reader', password: secret, reconnectPeriod: 0 })
    cleanup(() => reader.endAsync(true))
    const got: { topic: string; services: unknown }[] = []
    reader.on('message', (topic, payload) => got.push({ topic, services: ((rawDecoder.decode(payload) as unknown[])[16] as { services: unknown }).services }))
    await reader.subscribeAsync('ob/+/status', { qos: 1 })

    // As a store hands them over after a restart: each with the client id and broker id it was stored under.
    const offline = (src: string, services: unknown[]): Buffer => rawFrame(presenceSlots({ src, online: false, services }))
    const evil = [{ name: 'evil', version: '1', commands: [], events: [] }]
    const wills = [
      { client: 'dev-1', will: { cmd: 'publish', topic: 'ob/dev-1/status', payload: offline('dev-1', []), qos: 1, retain: true } },
      // dev-2's will would mark dev-1 offline.
      { client: 'dev-2', will: { cmd: 'publish', topic: 'ob/dev-1/status', payload: offline('dev-1', evil), qos: 1, retain: true } },
    ]
    for (const w of wills) {
      await persistence.putWill({ id: w.client }, w.will)
      // The memory store keeps the object: it now reads as left by a broker that is gone.
      Object.assign(w.will, { brokerId: 'earlier-run' })
    }
    const stored = async (): Promise<number> => {
      let n = 0
      for await (const _ of persistence.streamWill({})) n++
      return n
    }
    await until(() => got.some((m) => m.topic === 'ob/dev-1/status'), 10_000)
    await until(() => auth.stats().deniedPublish.will === 1, 10_000)
    let left = -1
    await until(() => {
      void stored().then((n) => (left = n))
      return left === 0
    }, 10_000)
    expect(got.filter((m) => m.topic === 'ob/dev-1/status')).toEqual([{ topic: 'ob/dev-1/status', services: [] }])
    expect(errors).toEqual([])
    // The retained status is dev-1's own will.
    const late = await mqtt.connectAsync(broker.url, { clientId: 'reader', username: 'reader', password: secret, reconnectPeriod: 0 })
    cleanup(() => late.endAsync(true))
    const retained: unknown[] = []
    late.on('message', (topic, payload, packet) => {
      if (topic === 'ob/dev-1/status' && packet.retain) retained.push(((rawDecoder.decode(payload) as unknown[])[16] as { services: unknown }).services)
    })
    await late.subscribeAsync('ob/dev-1/status', { qos: 1 })
    await until(() => retained.length === 1, 10_000)
    expect(retained).toEqual([[]])
  }, 30_000)
})
