import { describe, expect } from 'vitest'
import { contractTest } from './contract-kit.js'
import type { Outbox, QueueStore } from '../../runtime/index.js'

export interface DeviceTransactionContractOptions {
  /** A queue store and an outbox built with the same device transaction. */
  create(): { store: QueueStore; outbox: Outbox; dispose(): void }
  /** The stores undo what a failed `run` wrote (their rollback tests are declared only then). */
  durable: boolean
}

const T0 = 1_732_350_000_000
const LEASE = 30_000
const event = (topic: string) => ({ stream: 'events', topic, frame: new Uint8Array(8).fill(7), retain: false })

/**
 * What a queue store and an outbox built with one DeviceTransaction do together: a job's
 * settlement and its result event commit as one (runtime/ports/device-transaction.ts).
 */
export function describeDeviceTransactionContract(name: string, opts: DeviceTransactionContractOptions): void {
  const declare = contractTest<ReturnType<DeviceTransactionContractOptions['create']>>()
  const test = (title: string, fn: (o: ReturnType<DeviceTransactionContractOptions['create']>) => void): void => declare(title, opts.create, fn)

  describe(`DeviceTransaction contract: ${name}`, () => {
    test('is the one transaction both stores name', ({ store, outbox }) => {
      expect(store.transaction).toBe(outbox.transaction)
    })

    test("commits a job's completion and its result event in one run, and returns what the work returned", ({ store, outbox }) => {
      const { job } = store.enqueue({ queue: 'q', payload: 1 }, T0)
      const [leased] = store.lease('q', 1, T0, LEASE)
      const seq = store.transaction.run(() => {
        expect(store.complete(leased!.id, leased!.attempt, 'out', T0 + 1)).toBe(true)
        return outbox.append(event('q.completed'))
      })
      expect(store.get(job.id)).toMatchObject({ state: 'completed', output: 'out' })
      expect(outbox.peek(0, 10).map((e) => [e.seq, e.topic])).toEqual([[seq, 'q.completed']])
    })

    test('runs nested work as part of the outer run', ({ store, outbox }) => {
      const out = store.transaction.run(() => {
        store.enqueue({ queue: 'q', payload: 'a' }, T0)
        return outbox.transaction.run(() => {
          outbox.append(event('e/1'))
          return store.enqueue({ queue: 'q', payload: 'b' }, T0).created
        })
      })
      expect(out).toBe(true)
      expect(store.metrics('q', T0).ready).toBe(2)
      expect(outbox.stats().entries).toBe(1)
    })

    test('rethrows what the work throws', ({ store }) => {
      expect(() =>
        store.transaction.run(() => {
          throw new Error('the outbox refused the event')
        }),
      ).toThrow('the outbox refused the event')
    })

    if (!opts.durable) return

    test("undoes both the job's completion and its result event when the run fails", ({ store, outbox }) => {
      const { job } = store.enqueue({ queue: 'q', payload: 1 }, T0)
      const [leased] = store.lease('q', 1, T0, LEASE)
      expect(() =>
        store.transaction.run(() => {
          store.complete(leased!.id, leased!.attempt, 'out', T0 + 1)
          outbox.append(event('q.completed'))
          throw new Error('the settlement failed')
        }),
      ).toThrow('the settlement failed')
      expect(store.get(job.id)).toMatchObject({ state: 'leased', attempt: 1 })
      expect(store.metrics('q', T0 + 2)).toMatchObject({ completed: 0, leased: 1 })
      expect(outbox.peek(0, 10)).toEqual([])
      expect(outbox.stats()).toMatchObject({ entries: 0, bytes: 0 })
    })

    test('undoes only what a failed nested run wrote in either store, and commits the rest', ({ store, outbox }) => {
      for (let i = 0; i < 2; i++) store.enqueue({ queue: 'q', payload: i }, T0)
      const [a, b] = store.lease('q', 2, T0, LEASE)
      store.transaction.run(() => {
        store.complete(a!.id, a!.attempt, null, T0 + 1)
        outbox.append(event('a.completed'))
        expect(() =>
          outbox.transaction.run(() => {
            store.complete(b!.id, b!.attempt, null, T0 + 1)
            outbox.append(event('b.completed'))
            throw new Error('its result event could not be stored')
          }),
        ).toThrow('could not be stored')
      })
      expect(store.get(a!.id)).toMatchObject({ state: 'completed' })
      expect(store.get(b!.id)).toMatchObject({ state: 'leased' })
      expect(outbox.peek(0, 10).map((e) => e.topic)).toEqual(['a.completed'])
    })
  })
}
