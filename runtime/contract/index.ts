export { defineContract, type Contract, type AnyContract, type CommandSpec, type Schema } from './contract.js'
export { resource, type Resource, type ResourcesOf } from './resource.js'
export {
  defineService,
  type ServiceDefinition,
  type CommandContext,
  type EventContext,
  type HandlerContext,
  type InvokeOptions,
  type InvokeTarget,
  type ContractClient,
  type ServiceProxy,
  type SubscriptionSpec,
  type ServiceState,
  type ScheduleSpec,
  type ScheduleBuilder,
  type MisfirePolicy,
  type Occurrence,
} from './service.js'
