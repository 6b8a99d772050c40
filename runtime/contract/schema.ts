import type * as v from 'valibot'

/**
 * Any valibot schema: what commands, events, queues and their results are declared with. Its own
 * file, so every part of a contract (and the runtime) names it without importing another part.
 */
export type Schema = v.GenericSchema<unknown, unknown>
