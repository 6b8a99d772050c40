import type { Logger } from 'pino'
import type { ServiceDefinition, ServiceState } from '../contract/service.js'
import { ErrorCode, OutpostError } from '../errors.js'
import type { StateStore } from '../ports/state-store.js'
import { validate } from './validation.js'

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

/** The services one runtime hosts, by `name@version` and by name then version. */
export interface HostedServices {
  /** By `name@version`, in registration order. */
  readonly all: ReadonlyMap<string, HostedService>
  /** Service name → version → hosted service: lookups without building a key per message. */
  readonly byName: ReadonlyMap<string, ReadonlyMap<string, HostedService>>
}

/** `ctx.state` of one service: its scope in the store, values checked against its schema both ways. */
function serviceState(def: ServiceDefinition, store: StateStore): ServiceState<unknown> {
  const scope = def.contract.name
  const schema = def.state
  const check = (value: unknown, what: string): unknown => (schema === undefined ? value : validate(schema, value, what))
  return {
    get: (key) => {
      const value = store.get(scope, key)
      return value === undefined ? undefined : check(value, `stored state "${key}" of ${scope}`)
    },
    set: (key, value) => store.set(scope, key, check(value, `state "${key}" of ${scope}`)),
    delete: (key) => store.delete(scope, key),
    list: (prefix) => store.list(scope, prefix).map((e) => ({ key: e.key, value: check(e.value, `stored state "${e.key}" of ${scope}`) })),
  }
}

/**
 * Registers the services a runtime hosts: each gets its logger, its state view and its served
 * commands. @throws INVALID_CONFIG when a service version is registered twice
 */
export function hostServices(defs: readonly ServiceDefinition[], deps: { deviceId: string; log: Logger; stateStore: StateStore }): HostedServices {
  const all = new Map<string, HostedService>()
  const byName = new Map<string, Map<string, HostedService>>()
  for (const def of defs) {
    const key = `${def.contract.name}@${def.contract.version}`
    if (all.has(key)) throw new OutpostError(ErrorCode.INVALID_CONFIG, `service ${key} is registered twice on ${deps.deviceId}`)
    const commands = new Map<string, ServedCommand>()
    for (const name of Object.keys(def.contract.commands)) {
      const handler = Object.hasOwn(def.commands, name) ? def.commands[name] : undefined
      if (handler !== undefined) commands.set(name, { handler: handler as ServedCommand['handler'], spec: def.contract.commands[name] as ServedCommand['spec'] })
    }
    const h = { def, log: deps.log.child({ service: def.contract.name, version: def.contract.version }), state: serviceState(def, deps.stateStore), commands }
    all.set(key, h)
    let versions = byName.get(def.contract.name)
    if (versions === undefined) byName.set(def.contract.name, (versions = new Map()))
    versions.set(def.contract.version, h)
  }
  return { all, byName }
}
