// qlobber ships no type declarations; this is the part of its API the broker emitter uses.
declare module 'qlobber' {
  export interface QlobberOptions {
    separator?: string
    wildcard_one?: string
    wildcard_some?: string
    match_empty_levels?: boolean
    max_words?: number
  }
  export class Qlobber<V> {
    constructor(options?: QlobberOptions)
    add(topic: string, value: V): this
    /** Removes `value` from `topic`, or every value of `topic` when none is given. */
    remove(topic: string, value?: V): this
    match(topic: string): V[]
  }
}
