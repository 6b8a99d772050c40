/** A typed placeholder for something a service needs injected (a sensor, a client). */
export interface Resource<T> {
  readonly kind: 'resource'
  /** Phantom field: carries the type only. */
  readonly __type?: T
}

/** Declares a resource a service expects in `ctx.resources`; the runtime checks it is provided. */
export function resource<T>(): Resource<T> {
  return { kind: 'resource' }
}

/** The injected values for a record of resource declarations. */
export type ResourcesOf<R> = { [K in keyof R]: R[K] extends Resource<infer T> ? T : never }
