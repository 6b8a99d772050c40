import { ErrorCode, OutpostError } from '../errors.js'
import { assertTopicSegment, isTopicSegment, TOPIC_LEVEL_RULE } from '../topic-level.js'
import type { Envelope } from './envelope.js'

/** Default first topic level of every Outpost topic. */
export const DEFAULT_TOPIC_PREFIX = 'ob'

/**
 * Device-scoped topic layout. Every topic a device publishes starts with `<prefix>/<its id>/`,
 * so a broker ACL can confine its writes to its own namespace:
 *
 *   <prefix>/<src>/cmd/<target>/<service>/<version>/<command>   command to one device
 *   <prefix>/<src>/rep/<replyTo>                                 reply to a caller
 *   <prefix>/<src>/evt/<service>/<version>/<event>               event, to every subscriber
 *   <prefix>/<src>/status                                        presence (retained; also the last will)
 *   <prefix>/<src>/contract                                      contract document: the JSON Schemas of what it serves (retained)
 */
export interface Topics {
  readonly prefix: string
  /**
   * The topic an envelope is published on; every level it takes from the envelope is checked
   * (once per distinct topic: topics are remembered).
   * @throws INVALID_ENVELOPE when routing fields are missing, INVALID_TOPIC_LEVEL when one cannot be a level
   */
  topicOf(env: Envelope): string
  /** Filter for the commands of one service addressed to `device`. */
  commandFilter(device: string, service: string, version: string): string
  /** Filter for every reply addressed to `device`. */
  replyFilter(device: string): string
  /** Filter for events; omitted or `*` parts match anything. */
  eventFilter(sel: { device?: string; service?: string; version?: string; event?: string }): string
  /** Filter for every device's presence. */
  presenceFilter(): string
  /** The presence topic of one device. */
  presenceTopic(device: string): string
  /** The contract topic of one device (its retained contract document). */
  contractTopic(device: string): string
}

// The rule for one topic level lives in a leaf module that contracts use too; re-exported here,
// where the rest of the topic layout is.
export { assertTopicSegment, isTopicSegment, MAX_TOPIC_LEVEL_LENGTH } from '../topic-level.js'

/** The levels of a topic about to be built, checked. @throws INVALID_TOPIC_LEVEL naming the first bad one */
function checkLevels(env: Envelope, fields: readonly (keyof Envelope)[]): void {
  for (const field of fields) {
    const value = env[field]
    if (typeof value === 'string' && !isTopicSegment(value)) {
      throw new OutpostError(ErrorCode.INVALID_TOPIC_LEVEL, `${env.kind} field "${field}" cannot be a topic level (${TOPIC_LEVEL_RULE})`, { details: { field } })
    }
  }
}
const COMMAND_LEVELS = ['src', 'target', 'service', 'version', 'name'] as const
const REPLY_LEVELS = ['src', 'replyTo'] as const
const EVENT_LEVELS = ['src', 'service', 'version', 'name'] as const
const PRESENCE_LEVELS = ['src'] as const
const CONTRACT_LEVELS = ['src'] as const

/** Creates the topic layout under a prefix. */
export function createTopics(prefix: string = DEFAULT_TOPIC_PREFIX): Topics {
  assertTopicSegment('topic prefix', prefix)
  const wild = (s: string | undefined): string => (s === undefined || s === '*' ? '+' : s)
  const need = (env: Envelope, field: keyof Envelope): string => {
    const value = env[field]
    if (typeof value !== 'string') {
      throw new OutpostError(ErrorCode.INVALID_ENVELOPE, `a ${env.kind} envelope needs "${field}" to be routed`)
    }
    return value
  }
  // Topics repeat (same sender, target, service, command): remember them instead of building
  // and hashing a new string per message. Keys are the envelope's own strings, nested, so no
  // key string is built either. Bounded: cleared past 4096 entries.
  interface Memo {
    src: string
    topic: string
  }
  const commandMemo = new Map<string, Map<string, Map<string, Memo>>>() // target → service → command
  const replyMemo = new Map<string, Memo>() // replyTo
  const eventMemo = new Map<string, Map<string, Memo>>() // service → event (version 1)
  let memoSize = 0
  const fresh = (): void => {
    if (++memoSize > 4096) {
      commandMemo.clear()
      replyMemo.clear()
      eventMemo.clear()
      memoSize = 0
    }
  }
  const eventTopic = (env: Envelope, src: string, service: string, name: string): string => {
    let byName = eventMemo.get(service)
    if (byName === undefined) eventMemo.set(service, (byName = new Map()))
    const hit = byName.get(name)
    if (hit !== undefined && hit.src === src) return hit.topic
    checkLevels(env, EVENT_LEVELS)
    fresh()
    const topic = `${prefix}/${src}/evt/${service}/1/${name}`
    byName.set(name, { src, topic })
    return topic
  }
  const commandTopic = (env: Envelope, src: string, target: string, service: string, name: string): string => {
    let byService = commandMemo.get(target)
    if (byService === undefined) commandMemo.set(target, (byService = new Map()))
    let byName = byService.get(service)
    if (byName === undefined) byService.set(service, (byName = new Map()))
    const hit = byName.get(name)
    if (hit !== undefined && hit.src === src) return hit.topic
    checkLevels(env, COMMAND_LEVELS)
    fresh()
    const topic = `${prefix}/${src}/cmd/${target}/${service}/1/${name}`
    byName.set(name, { src, topic })
    return topic
  }
  const replyTopic = (env: Envelope, src: string, replyTo: string): string => {
    const hit = replyMemo.get(replyTo)
    if (hit !== undefined && hit.src === src) return hit.topic
    checkLevels(env, REPLY_LEVELS)
    fresh()
    const topic = `${prefix}/${src}/rep/${replyTo}`
    replyMemo.set(replyTo, { src, topic })
    return topic
  }
  return {
    prefix,
    topicOf(env) {
      switch (env.kind) {
        case 'command': {
          const target = need(env, 'target')
          const name = need(env, 'name')
          const service = need(env, 'service')
          const version = env.version ?? '1'
          if (version !== '1') {
            checkLevels(env, COMMAND_LEVELS)
            return `${prefix}/${env.src}/cmd/${target}/${service}/${version}/${name}`
          }
          return commandTopic(env, env.src, target, service, name)
        }
        case 'reply': {
          const replyTo = need(env, 'replyTo')
          return replyTopic(env, env.src, replyTo)
        }
        case 'event': {
          const service = need(env, 'service')
          const name = need(env, 'name')
          const version = env.version ?? '1'
          if (version !== '1') {
            checkLevels(env, EVENT_LEVELS)
            return `${prefix}/${env.src}/evt/${service}/${version}/${name}`
          }
          return eventTopic(env, env.src, service, name)
        }
        case 'presence':
          checkLevels(env, PRESENCE_LEVELS)
          return `${prefix}/${env.src}/status`
        case 'contract':
          checkLevels(env, CONTRACT_LEVELS)
          return `${prefix}/${env.src}/contract`
      }
    },
    commandFilter: (device, service, version) => `${prefix}/+/cmd/${device}/${service}/${version}/+`,
    replyFilter: (device) => `${prefix}/+/rep/${device}`,
    eventFilter: (sel) => `${prefix}/${wild(sel.device)}/evt/${wild(sel.service)}/${wild(sel.version)}/${wild(sel.event)}`,
    presenceFilter: () => `${prefix}/+/status`,
    presenceTopic: (device) => `${prefix}/${device}/status`,
    contractTopic: (device) => `${prefix}/${device}/contract`,
  }
}

/** True when an MQTT topic filter (with `+` and `#`) matches a topic. [MQTT-4.7.1] */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split('/')
  const t = topic.split('/')
  for (let i = 0; i < f.length; i++) {
    const part = f[i]
    if (part === '#') return true
    if (i >= t.length) return false
    if (part !== '+' && part !== t[i]) return false
  }
  return f.length === t.length
}
