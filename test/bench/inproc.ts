// In-process command round trip: Outpost (memory bridge, and local dispatch) vs Moleculer's
// local broker with its validator vs PURISTA's DefaultEventBridge with zod.
import { createMemoryBridge, createMemoryHub, createRuntime } from '../../runtime/index.js'
import { runLoad, type BenchResult, type LoadOptions } from './measure.js'
import { ingestContract, ingestService, payload } from './workload.js'

type Call = () => Promise<unknown>
interface System {
  name: string
  setup(): Promise<{ call: Call; teardown(): Promise<void> }>
}

const outpostMemory: System = {
  name: 'outpost-memory',
  async setup() {
    const hub = createMemoryHub()
    const device = createRuntime({ bridge: createMemoryBridge({ hub, deviceId: 'device' }), services: [ingestService()] })
    const caller = createRuntime({ bridge: createMemoryBridge({ hub, deviceId: 'caller' }) })
    await device.start()
    await caller.start()
    const client = caller.client(ingestContract)
    await client.add(payload())
    return { call: () => client.add(payload()), teardown: async () => { await caller.stop(); await device.stop() } }
  },
}

const outpostLocal: System = {
  name: 'outpost-local',
  async setup() {
    const hub = createMemoryHub()
    const rt = createRuntime({ bridge: createMemoryBridge({ hub, deviceId: 'device' }), services: [ingestService()] })
    await rt.start()
    const client = rt.client(ingestContract)
    return { call: () => client.add(payload()), teardown: () => rt.stop() }
  },
}

const moleculer: System = {
  name: 'moleculer-0.15-local',
  async setup() {
    const { ServiceBroker } = await import('moleculer')
    const broker = new ServiceBroker({ logger: false, validator: true, nodeID: 'bench' })
    let n = 0
    broker.createService({
      name: 'ingest',
      actions: { add: { params: { deviceId: 'string', reading: 'number', ts: 'number' }, handler: () => ({ ok: true, n: ++n }) } },
    })
    await broker.start()
    return { call: () => broker.call('ingest.add', payload()), teardown: () => broker.stop() }
  },
}

const purista: System = {
  name: 'purista-1.11',
  async setup() {
    const { ServiceBuilder, DefaultEventBridge, initLogger } = await import('@purista/core')
    const { z } = await import('zod')
    const logger = initLogger('error')
    const bridge = new DefaultEventBridge({ logger })
    await bridge.start()
    const builder = new ServiceBuilder({ serviceName: 'ingest', serviceVersion: '1', serviceDescription: 'bench' })
    let n = 0
    const cmd = builder
      .getCommandBuilder('add', 'adds a reading')
      .addPayloadSchema(z.object({ deviceId: z.string(), reading: z.number(), ts: z.number() }))
      .addParameterSchema(z.object({}))
      .addOutputSchema(z.object({ ok: z.literal(true), n: z.number() }))
      .setCommandFunction(async () => ({ ok: true as const, n: ++n }))
    builder.addCommandDefinition(cmd.getDefinition())
    const service = await builder.getInstance(bridge, { logger })
    await service.start()
    const call = (): Promise<unknown> =>
      bridge.invoke({
        sender: { serviceName: 'bench', serviceVersion: '1', serviceTarget: 'caller', instanceId: 'bench' },
        receiver: { serviceName: 'ingest', serviceVersion: '1', serviceTarget: 'add' },
        payload: { payload: payload(), parameter: {} },
        contentType: "application/json",
        contentEncoding: "utf-8",
      })
    return { call, teardown: async () => { await service.destroy(); await bridge.destroy() } }
  },
}

/** The in-process systems by name, for test/bench/procs/inproc.ts. */
export const inProcessSystems: Record<string, System> = Object.fromEntries([outpostMemory, outpostLocal, moleculer, purista].map((s) => [s.name, s]))

/** Measures one system in this process (the caller is a fresh process per measurement). */
export async function measureInProcess(name: string, load: LoadOptions): Promise<{ ops_per_s: number; p50_us: number; p99_us: number; cpu_us_per_op: number }> {
  const system = inProcessSystems[name]
  if (system === undefined) throw new Error(`unknown system ${name}`)
  const { call, teardown } = await system.setup()
  const r = await runLoad(call, load)
  await teardown()
  return r
}
