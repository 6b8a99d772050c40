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
