// Compile-time checks of the contract types (run by `tsc --noEmit` in CI): handler payloads,
// results, events and the typed proxy are inferred from the valibot schemas.
import * as v from 'valibot'
import { defineContract, defineService, createRuntime, createMemoryHub, createMemoryBridge } from '../../runtime/index.js'
const a = defineContract({ name: 'a', version: '1', commands: { go: { payload: v.object({ x: v.number() }), result: v.object({ y: v.string() }) } }, events: { done: v.object({ z: v.boolean() }) } })
const b = defineContract({ name: 'b', version: '2', commands: {} })
defineService(b, {
  uses: [a],
  commands: {},
  subscriptions: (s) => ({
    // @ts-expect-error payload.z is boolean
    s1: s.on(a, 'done', (p) => { const n: number = p.z; return n }),
  }),
})
defineService(a, {
  uses: [a],
  commands: {
    go: async (p, ctx) => {
      const x: number = p.x
      // @ts-expect-error unknown event
      await ctx.emit('nope', {})
      // @ts-expect-error wrong payload for emit
      await ctx.emit('done', { z: 1 })
      const r = await ctx.service.a['1'].go({ x: 1 })
      const y: string = r.y
      return { y: y + String(x) }
    },
  },
})
defineService(a, {
  commands: {
    // @ts-expect-error the result must match the result schema
    go: () => ({ y: 2 }),
  },
})
// @ts-expect-error every declared command needs a handler
defineService(a, { commands: {} })
const rt = createRuntime({ bridge: createMemoryBridge({ hub: createMemoryHub(), deviceId: 'x' }) })
// @ts-expect-error payload type is checked on the client
void rt.client(a).go({ x: 'no' })

defineService(b, {
  state: v.object({ seen: v.number() }),
  commands: {},
  subscriptions: (s) => ({
    s2: s.on(a, 'done', (_p, ctx) => {
      const seen: number | undefined = ctx.state.get('k')?.seen
      // @ts-expect-error state values must match the state schema
      ctx.state.set('k', { seen: 'often' })
      ctx.state.set('k', { seen: (seen ?? 0) + 1 })
    }),
  }),
})

// Queues: workers, enqueue, result events and bindings are typed from the queue's schemas.
const q = defineContract({
  name: 'q',
  version: '1',
  events: { seen: v.object({ n: v.number() }) },
  queues: { crunch: { payload: v.object({ n: v.number() }), result: v.object({ sum: v.number() }), progress: v.object({ pct: v.number() }) } },
})
defineService(q, {
  commands: {},
  workers: {
    crunch: async (p, ctx) => {
      const n: number = p.n
      ctx.heartbeat({ pct: 10 })
      // @ts-expect-error progress must match the progress schema
      ctx.heartbeat({ pct: 'ten' })
      const attempt: number = ctx.job.attempt
      if (attempt > 3) return ctx.fail('too many')
      if (n < 0) return ctx.retry({ delayMs: 1_000 })
      ctx.enqueue('crunch', { n: n - 1 }, { idempotencyKey: `n-${n - 1}` })
      // @ts-expect-error unknown queue
      ctx.enqueue('nope', { n: 1 })
      // @ts-expect-error wrong job payload
      ctx.enqueue('crunch', { n: 'one' })
      // @ts-expect-error result events come from the runtime, not from handlers
      await ctx.emit('crunch.completed', { jobId: 'x', queue: 'crunch', attempt: 1, output: { sum: 1 } })
      return { sum: n }
    },
  },
  bindings: (b) => ({
    fromSeen: b.event(q, 'seen', 'crunch', { payload: (e) => ({ n: e.n }) }),
    // @ts-expect-error the binding must feed a declared queue
    wrong: b.event(q, 'seen', 'nope'),
  }),
  subscriptions: (s) => ({
    done: s.on(q, 'crunch.completed', (p) => {
      const sum: number = p.output.sum
      // @ts-expect-error output is typed from the result schema
      const bad: string = p.output.sum
      return [sum, bad]
    }),
    progress: s.on(q, 'crunch.progress', (p) => p.progress.pct),
  }),
})
defineService(q, {
  commands: {},
  workers: {
    // @ts-expect-error the result must match the result schema
    crunch: () => ({ sum: 'all' }),
  },
})
// @ts-expect-error every declared queue needs a worker
defineService(q, { commands: {} })
const qrt = createRuntime({ bridge: createMemoryBridge({ hub: createMemoryHub(), deviceId: 'y' }) })
qrt.queue(q, 'crunch').enqueue({ n: 1 })
// @ts-expect-error payload type is checked on the handle
qrt.queue(q, 'crunch').enqueue({ n: '1' })
// @ts-expect-error unknown queue on the handle
qrt.queue(q, 'nope')

// A queue with `results: 'none'` declares no result events.
const quiet = defineContract({ name: 'quiet', version: '1', queues: { tidy: { payload: v.object({}), result: v.object({}), results: 'none' } } })
defineService(defineContract({ name: 'listener2', version: '1' }), {
  commands: {},
  subscriptions: (s) => ({
    // @ts-expect-error no result events for a queue with results: 'none'
    x: s.on(quiet, 'tidy.completed', () => undefined),
  }),
})
