export { defineContract, type Contract, type AnyContract, type CommandSpec } from './contract.js'
export type { Schema } from './schema.js'
export { resource, type Resource, type ResourcesOf } from './resource.js'
export {
  JobDecision,
  isJobDecision,
  RESULT_EVENT_SUFFIXES,
  type QueueSpec,
  type RetryBackoff,
  type ResultDelivery,
  type ResultEvents,
  type JobCompleted,
  type JobFailed,
  type JobDead,
  type JobProgress,
  type DeadReason,
} from './queue.js'
export {
  defineService,
  type ServiceDefinition,
  type CommandContext,
  type EventContext,
  type HandlerContext,
  type WorkerContext,
  type WorkerHandlers,
  type JobInfo,
  type EnqueueOptions,
  type JobRef,
  type BindingSpec,
  type BindingBuilder,
  type BoundEvent,
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
  type Timing,
} from './service.js'
export { every } from './schedule-spec.js'
export { cron } from './cron.js'
