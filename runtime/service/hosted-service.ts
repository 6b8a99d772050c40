import type { Logger } from 'pino'
import type { ServiceDefinition, ServiceState } from '../contract/service.js'

/** A command a hosted service serves: its handler and its contract's schemas. */
export interface ServedCommand {
  handler: (payload: unknown, ctx: unknown) => unknown
  spec: { payload: unknown; result: unknown }
}

/** A service as one runtime hosts it: its definition, logger and state. */
export interface HostedService {
  def: ServiceDefinition
  log: Logger
  state: ServiceState<unknown>
  /**
   * Its commands by name, in a Map: a name that arrives in a frame is looked up here, never on
   * the definition's objects, where `constructor` or `__proto__` would find what Object inherits.
   */
  commands: ReadonlyMap<string, ServedCommand>
}
