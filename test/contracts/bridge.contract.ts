import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  createMessenger,
  createRuntime,
  ENVELOPE_VERSION,
  ErrorCode,
  isOutpostError,
  type Bridge,
  type BridgeStatus,
  type Envelope,
  type MessagingOptions,
  type Runtime,
  type ServiceDefinition,
} from '../../runtime/index.js'
import { counterContract, counterService, echoContract, echoService, watcherService, type Observed } from '../fixtures/services.js'
import { until } from '../helpers/wait.js'
import { caught } from '../helpers/caught.js'

/** A fresh "network" per test: bridges made from it can reach each other. */
export interface TestNetwork {
  bridge(deviceId: string): Bridge
  /** How this network's runtimes name topics and send replies (a topic prefix of its own, reply QoS). */
  messaging?: MessagingOptions
  dispose(): Promise<void>
}

export interface BridgeContractOptions {
  createNetwork(): Promise<TestNetwork>
}

const observed = (): Observed => ({ executions: 0, slowAborted: 0, events: [] })

const until3s = (check: () => boolean): Promise<void> => until(check, 3_000)

/** The behaviour every bridge must show, with the same service code. */
export function describeBridgeContract(name: string, opts: BridgeContractOptions): void {

  describe(`Bridge contract: ${name}`, () => {
    let net: TestNetwork
    const runtimes: Runtime[] = []
    const device = async (id: string, services: ServiceDefinition[]): Promise<Runtime> => {
      const rt = createRuntime({ bridge: net.bridge(id), messaging: net.messaging, services, discoveryWaitMs: 2_000 })
      runtimes.push(rt)
      await rt.start({ waitForBroker: true })
      return rt
    }

    beforeEach(async () => {
      net = await opts.createNetwork()
    })
    afterEach(async () => {
      await Promise.all(runtimes.splice(0).map((r) => r.stop({ drainMs: 200 })))
      await net.dispose()
    })

    it('answers a command from another device with its validated result', async () => {
      const seen = observed()
      await device('dev-a', [counterService(seen)])
      const caller = await device('caller', [])
      const counter = caller.client(counterContract)
      expect(await counter.add({ deviceId: 'x', reading: 1.5, ts: 1 })).toEqual({ ok: true, n: 1 })
      expect(await counter.add({ deviceId: 'x', reading: 2.5, ts: 2 })).toEqual({ ok: true, n: 2 })
      expect(seen.executions).toBe(2)
    })

    it('rejects an invalid payload with VALIDATION_FAILED listing issue paths, never the raw input', async () => {
      await device('dev-a', [counterService(observed())])
      const caller = await device('caller', [])
      const err = await caught(caller.invoke({ service: 'counter', command: 'add' }, { deviceId: 'x', reading: 'top-secret-value', ts: 1 }))
      expect(isOutpostError(err, ErrorCode.VALIDATION_FAILED)).toBe(true)
      const details = (err as { details: { issues: { path: string; received: string }[] } }).details
      expect(details.issues).toEqual([expect.objectContaining({ path: 'reading', expected: 'number', received: 'string' })])
      expect(JSON.stringify(details)).not.toContain('top-secret-value')
      expect((err as Error).message).not.toContain('top-secret-value')
    })

    it('answers NO_HANDLER for an unknown command and for an unknown service', async () => {
      await device('dev-a', [counterService(observed())])
      const caller = await device('caller', [])
      const unknownCommand = await caught(caller.invoke({ service: 'counter', command: 'nope' }, {}))
      expect(isOutpostError(unknownCommand, ErrorCode.NO_HANDLER)).toBe(true)
      const unknownService = await caught(caller.invoke({ service: 'nobody', command: 'x' }, {}, { timeoutMs: 300 }))
      expect(isOutpostError(unknownService, ErrorCode.NO_HANDLER)).toBe(true)
    })

    it('answers INTERNAL when a handler throws, keeping the stack on the device', async () => {
      await device('dev-a', [counterService(observed())])
      const caller = await device('caller', [])
      const err = await caught(caller.client(counterContract).crash({}))
      expect(isOutpostError(err, ErrorCode.INTERNAL)).toBe(true)
      expect((err as Error).message).not.toContain('secret stack detail')
      expect((err as { details?: unknown }).details).toBeUndefined()
    })

    it('passes a deliberate OutpostError code through and turns a result that fails its schema into INTERNAL', async () => {
      await device('dev-a', [counterService(observed())])
      const caller = await device('caller', [])
      const counter = caller.client(counterContract)
      expect(isOutpostError(await caught(counter.refuse({})), ErrorCode.VALIDATION_FAILED)).toBe(true)
      expect(isOutpostError(await caught(counter.badResult({})), ErrorCode.INTERNAL)).toBe(true)
    })

    it('fails with TIMEOUT at the caller when the deadline passes, and aborts the handler', async () => {
      const seen = observed()
      await device('dev-a', [counterService(seen)])
      const caller = await device('caller', [])
      const err = await caught(caller.client(counterContract).slow({ ms: 5_000 }, { timeoutMs: 200 }))
      expect(isOutpostError(err, ErrorCode.TIMEOUT)).toBe(true)
      await until3s(() => seen.slowAborted === 1)
    })

    it('delivers emitted events to a subscriber on another device', async () => {
      const seen = observed()
      await device('dev-a', [counterService(observed())])
      await device('dev-w', [watcherService(seen)])
      const caller = await device('caller', [])
      await caller.client(counterContract).add({ deviceId: 'k', reading: 1, ts: 1 })
      await until3s(() => seen.events.length === 1)
      expect(seen.events[0]).toEqual({ n: 1, by: 'k', from: 'dev-a' })
    })

    it('lets a handler call another service through the typed proxy', async () => {
      await device('dev-a', [counterService(observed())])
      await device('dev-e', [echoService()])
      const caller = await device('caller', [])
      expect(await caller.client(counterContract).relay({ text: 'hi' })).toEqual({ echoed: 'hi', via: 'dev-e' })
    })

    it('runs a command once, on one instance, when several devices host the service', async () => {
      const a = observed()
      const b = observed()
      await device('dev-a', [counterService(a)])
      await device('dev-b', [counterService(b)])
      const caller = await device('caller', [])
      await until3s(() => caller.directory.instances('counter', '1').length === 2)
      const counter = caller.client(counterContract)
      for (let i = 0; i < 20; i++) await counter.add({ deviceId: 'c', reading: i, ts: i })
      expect(a.executions + b.executions).toBe(20)
      expect(a.executions).toBeGreaterThan(0)
      expect(b.executions).toBeGreaterThan(0)
    })

    it('sends a command to the device the caller names', async () => {
      await device('dev-e1', [echoService()])
      await device('dev-e2', [echoService()])
      const caller = await device('caller', [])
      await until3s(() => caller.directory.instances('echo', '1').length === 2)
      const echo = caller.client(echoContract)
      for (let i = 0; i < 5; i++) expect((await echo.say({ text: 't' }, { device: 'dev-e2' })).device).toBe('dev-e2')
    })

    it('executes a redelivered command once and re-sends the cached reply', async () => {
      const seen = observed()
      await device('dev-a', [counterService(seen)])
      const probe = createMessenger({ bridge: net.bridge('probe'), ...net.messaging })
      await probe.connect()
      const replies: Envelope[] = []
      await probe.subscribe(probe.topics.replyFilter('probe-inbox'), (m) => {
        replies.push(m.envelope)
      })
      const cmd: Envelope = {
        v: ENVELOPE_VERSION, kind: 'command', id: '01JDUPLICATECOMMAND0000001', src: 'probe', inst: 'p1', at: Date.now(),
        service: 'counter', version: '1', name: 'add', target: 'dev-a', replyTo: 'probe-inbox', deadline: Date.now() + 5_000,
        payload: { deviceId: 'dup', reading: 1, ts: 1 },
      }
      await probe.publish(cmd)
      await until3s(() => replies.length === 1)
      await probe.publish(cmd)
      await until3s(() => replies.length === 2)
      expect(seen.executions).toBe(1)
      expect(replies[1]!.payload).toEqual(replies[0]!.payload)
      expect(replies[1]!.corr).toBe(cmd.id)
      await probe.close({ drainMs: 100 })
    })

    it('tracks live devices from presence; a device that goes away is no longer live, and its service is unreachable, not unhandled', async () => {
      const a = await device('dev-a', [counterService(observed())])
      const caller = await device('caller', [])
      await until3s(() => caller.directory.instances('counter', '1').length === 1)
      await a.stop({ drainMs: 100 })
      await until3s(() => caller.directory.instances('counter', '1').length === 0)
      expect(caller.directory.deviceState('dev-a')).toBe('gone')
      // Known from before, offline now: SERVICE_UNREACHABLE (retryable); NO_HANDLER is for a service nobody declares.
      const err = await caught(caller.client(counterContract).add({ deviceId: 'x', reading: 1, ts: 1 }, { timeoutMs: 300 }))
      expect(isOutpostError(err, ErrorCode.SERVICE_UNREACHABLE)).toBe(true)
    })

    it('reports connection status as a typed stream that ends with closed', async () => {
      const bridge = net.bridge('status-dev')
      const seen: BridgeStatus['type'][] = []
      const consumed = (async () => {
        for await (const s of bridge.statusStream()) seen.push(s.type)
      })()
      await bridge.connect()
      await bridge.close({ drainMs: 100 })
      await consumed
      expect(seen[0]).toBe('idle')
      expect(seen).toContain('connected')
      expect(seen.at(-1)).toBe('closed')
    })

    it('drains an in-flight call on close and refuses new work afterwards', async () => {
      await device('dev-a', [counterService(observed())])
      const callerBridge = net.bridge('caller')
      const caller = createRuntime({ bridge: callerBridge, messaging: net.messaging, discoveryWaitMs: 2_000 })
      await caller.start({ waitForBroker: true })
      const inFlight = caller.client(counterContract).slow({ ms: 150 })
      await new Promise((r) => setTimeout(r, 30))
      await caller.stop({ drainMs: 2_000 })
      expect(await inFlight).toEqual({ aborted: false })
      expect(isOutpostError(await caught(caller.client(counterContract).slow({ ms: 1 })), ErrorCode.BRIDGE_CLOSED)).toBe(true)
      expect(isOutpostError(await caught(callerBridge.publish('ob/caller/evt/s/1/e', new Uint8Array([0x80]))), ErrorCode.BRIDGE_CLOSED)).toBe(true)
    })

    it('serves concurrent calls from several callers', async () => {
      await device('dev-a', [counterService(observed())])
      const c1 = await device('caller-1', [])
      const c2 = await device('caller-2', [])
      const calls = []
      for (let i = 0; i < 50; i++) {
        calls.push(c1.client(counterContract).add({ deviceId: 'one', reading: i, ts: i }))
        calls.push(c2.client(counterContract).add({ deviceId: 'two', reading: i, ts: i }))
      }
      const results = await Promise.all(calls)
      expect(new Set(results.map((r) => r.n)).size).toBe(100)
    })
  })
}
