import { ErrorCode, OutpostError } from '../errors.js'
import { assertTopicSegment } from '../topic-level.js'
import { checkQueueSpec, resultEventSchemas, type QueueSpec, type ResultEvents } from './queue.js'
import type { Schema } from './schema.js'

// Kept where it was declared before schema.ts existed, for code that imports it from here.
export type { Schema } from './schema.js'

/** A command's declaration: what it takes and what it answers. */
export interface CommandSpec<P extends Schema = Schema, R extends Schema = Schema> {
  description?: string
  payload: P
  result: R
}

/**
 * A service's public face: name, version, commands, the events it emits and its durable
 * queues. `events` also holds each queue's result events (`<queue>.completed`, `.failed`,
 * `.dead`, and `.progress` when declared), which the runtime emits. No handlers, no I/O.
 */
export interface Contract<
  N extends string = string,
  V extends string = string,
  C extends Record<string, CommandSpec> = Record<string, CommandSpec>,
  E extends Record<string, Schema> = Record<string, Schema>,
  Q extends Record<string, QueueSpec> = Record<string, QueueSpec>,
> {
  readonly kind: 'contract'
  readonly name: N
  readonly version: V
  readonly description?: string
  readonly commands: C
  readonly events: E
  readonly queues: Q
  /** Names in `events` that are queue results (emitted by the runtime, not by handlers). */
  readonly resultEvents: ReadonlySet<string>
}

/** Any contract, whatever its commands, events and queues. */
export type AnyContract = Contract<string, string, Record<string, CommandSpec>, Record<string, Schema>, Record<string, QueueSpec>>

/**
 * When the global under this symbol holds an array, every contract defined is added to it. Only
 * the build sets it (build/contract-table.ts), to find the contracts a device's code defines.
 */
export const CONTRACTS_DEFINED: unique symbol = Symbol.for('outpost.contracts-defined') as never

const NAME = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/

function assertName(what: string, name: string): void {
  if (!NAME.test(name)) {
    throw new OutpostError(ErrorCode.INVALID_CONFIG, `${what} "${name}" must start with a letter and use only letters, digits, '_' and '-' (at most 64)`)
  }
}

/**
 * Declares a service contract. Shared between the device that implements the service and
 * every caller, so callers get typed proxies without importing handler code.
 * @throws INVALID_CONFIG for names that cannot travel in a topic.
 */
export function defineContract<
  const N extends string,
  const V extends string,
  C extends Record<string, CommandSpec> = Record<never, CommandSpec>,
  E extends Record<string, Schema> = Record<never, Schema>,
  Q extends Record<string, QueueSpec> = Record<never, QueueSpec>,
>(def: { name: N; version: V; description?: string; commands?: C; events?: E; queues?: Q }): Contract<N, V, C, E & ResultEvents<Q>, Q> {
  assertName('service name', def.name)
  assertTopicSegment('service version', def.version)
  for (const c of Object.keys(def.commands ?? {})) assertName('command name', c)
  for (const e of Object.keys(def.events ?? {})) assertName('event name', e)
  const events: Record<string, Schema> = { ...def.events }
  const resultEvents = new Set<string>()
  for (const [q, spec] of Object.entries(def.queues ?? {})) {
    assertName('queue name', q)
    checkQueueSpec(q, spec)
    for (const [name, schema] of Object.entries(resultEventSchemas(q, spec))) {
      events[name] = schema
      resultEvents.add(name)
    }
  }
  const contract: Contract<N, V, C, E & ResultEvents<Q>, Q> = {
    kind: 'contract',
    name: def.name,
    version: def.version,
    description: def.description,
    commands: (def.commands ?? {}) as C,
    events: events as E & ResultEvents<Q>,
    queues: (def.queues ?? {}) as Q,
    resultEvents,
  }
  const seen = (globalThis as Record<symbol, unknown>)[CONTRACTS_DEFINED]
  if (Array.isArray(seen)) seen.push(contract)
  return contract
}
