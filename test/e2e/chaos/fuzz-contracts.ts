// Contracts of the device under attack (test/e2e/chaos/fuzz-device.ts), shared with the tests
// that attack it: what it hosts, the events it listens to and the service it calls.
import * as v from 'valibot'
import { defineContract } from '../../../runtime/index.js'

/** Events from other devices: `reading` is subscribed to, `sample` is bound to the durable queue `work`. */
export const sensorContract = defineContract({
  name: 'sensor',
  version: '1',
  events: {
    reading: v.object({ value: v.number() }),
    sample: v.object({ at: v.number() }),
  },
})

/** A service on another device that the device under attack calls, so it receives replies. */
export const peerContract = defineContract({
  name: 'peer',
  version: '1',
  commands: { ping: { payload: v.object({ n: v.number() }), result: v.object({ n: v.number() }) } },
})

/** What the device reports about itself: memory after a full collection, and its counters. */
export const probeResult = v.object({
  rss: v.number(),
  /** Memory V8's heap occupies (v8.getHeapStatistics().total_physical_size). */
  heapPhysical: v.number(),
  heapUsed: v.number(),
  external: v.number(),
  pingsOk: v.number(),
  pingsFailed: v.number(),
  readings: v.number(),
  samples: v.number(),
  lastSample: v.number(),
  received: v.number(),
})

/** The service the device under attack hosts: commands with object payloads, a probe, a durable queue. */
export const targetContract = defineContract({
  name: 'target',
  version: '1',
  commands: {
    put: { payload: v.object({ name: v.string(), n: v.number() }), result: v.object({ ok: v.literal(true), n: v.number() }) },
    // Every key optional: an array (which has none of them) must still not pass as an object.
    configure: { payload: v.object({ label: v.optional(v.string()), level: v.optional(v.number()) }), result: v.object({ ok: v.literal(true) }) },
    reset: { payload: v.object({}), result: v.object({ ok: v.literal(true) }) },
    probe: { payload: v.object({}), result: probeResult },
  },
  queues: {
    work: {
      payload: v.object({ at: v.number() }),
      result: v.object({ at: v.number() }),
      results: 'none',
      concurrency: 4,
      // Completed jobs go soon: the database should hold what the attack left, not our own history.
      keepCompletedMs: 1_000,
    },
  },
})
