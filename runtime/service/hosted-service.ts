import type { Logger } from 'pino'
import type { ServiceDefinition, ServiceState } from '../contract/service.js'

/** A service as one runtime hosts it: its definition, logger and state. */
export interface HostedService {
  def: ServiceDefinition
  log: Logger
  state: ServiceState<unknown>
}
