import type { Envelope, EnvelopeKind } from '../../runtime/wire/envelope.js'
import { isTopicSegment } from '../../runtime/wire/topics.js'

// The broker's rules for what a device may publish and subscribe to, as pure functions of the
// topic layout (runtime/wire/README.md): the hooks in broker-auth.ts apply them per packet.

/** Why a publish is refused; each is a counter of AuthStats.deniedPublish. */
export type PublishDenial = 'namespace' | 'layout' | 'retain' | 'malformed' | 'sender' | 'will'

/**
 * The kind of envelope a device's own topic carries, from its levels (`<prefix>/<id>/…`), or
 * undefined when the topic is not one of the layouts: `cmd/<target>/<service>/<version>/<command>`,
 * `rep/<replyTo>`, `evt/<service>/<version>/<event>`, `status`, `contract`. Levels after the
 * sender must be valid topic levels (runtime/topic-level.ts); the first two are the caller's to check.
 *
 * `status` (presence) and `contract` (the device's contract document) are the two retained
 * topics that describe the device itself: `describesDevice` says which kinds those are.
 */
export function layoutOf(levels: readonly string[]): EnvelopeKind | undefined {
  let kind: EnvelopeKind
  switch (levels[2]) {
    case 'cmd':
      if (levels.length !== 7) return undefined
      kind = 'command'
      break
    case 'rep':
      if (levels.length !== 4) return undefined
      kind = 'reply'
      break
    case 'evt':
      if (levels.length !== 6) return undefined
      kind = 'event'
      break
    case 'status':
      return levels.length === 3 ? 'presence' : undefined
    case 'contract':
      return levels.length === 3 ? 'contract' : undefined
    default:
      return undefined
  }
  for (let i = 3; i < levels.length; i++) if (!isTopicSegment(levels[i]!)) return undefined
  return kind
}

/**
 * True for the kinds of topic a device may retain, and clear with an empty retained message
 * [MQTT-3.3.1-10]: its presence and its contract document, which describe the device itself and
 * must be there for whoever subscribes later. Anything else retained is refused.
 */
export const describesDevice = (kind: EnvelopeKind): boolean => kind === 'presence' || kind === 'contract'

/**
 * True when an envelope is routed as the topic it came on says (levels from `layoutOf`): a
 * command to the topic's target, service, version and name, a reply to its `replyTo`, an event
 * of its service, version and name, a presence on a status topic, a contract document on a
 * contract topic. A device that lies here would reach one device with a frame that names another.
 */
export function routedAsTopic(env: Envelope, kind: EnvelopeKind, levels: readonly string[]): boolean {
  if (env.kind !== kind) return false
  switch (kind) {
    case 'command':
      return env.target === levels[3] && env.service === levels[4] && (env.version ?? '1') === levels[5] && env.name === levels[6]
    case 'reply':
      return env.replyTo === levels[3]
    case 'event':
      return env.service === levels[3] && (env.version ?? '1') === levels[4] && env.name === levels[5]
    case 'presence':
      return levels[2] === 'status'
    case 'contract':
      return levels[2] === 'contract'
  }
}

/**
 * True when every topic that `filter` matches is matched by `allowed` too [MQTT-4.7.1]: compared
 * level by level, `#` in `allowed` takes the rest (and the parent level), `+` in `allowed` takes
 * one level of `filter` (a name or `+`), a name in `allowed` only the same name. A filter whose
 * first level starts with `$` is never within a filter that does not (MQTT-4.7.2-1).
 */
export function filterWithin(filter: string, allowed: string): boolean {
  const f = filter.split('/')
  const a = allowed.split('/')
  if (f[0]!.startsWith('$') !== a[0]!.startsWith('$')) return false
  for (let i = 0; i < a.length; i++) {
    const part = a[i]
    if (part === '#') return true
    if (i >= f.length) return false
    const mine = f[i]
    if (mine === '#') return false
    if (part === '+') continue
    if (mine !== part) return false
  }
  return f.length === a.length
}

/**
 * The filters a device may subscribe within: the commands addressed to it, the replies to it,
 * every device's presence, and the events its role names (only filters under `<prefix>/+/evt/`
 * count; a role cannot open commands or replies).
 */
export function deviceFilters(prefix: string, id: string, roleFilters: readonly string[]): { own: string[]; events: string[] } {
  return {
    own: [`${prefix}/+/cmd/${id}/#`, `${prefix}/+/rep/${id}`, `${prefix}/+/status`],
    events: roleFilters.filter((r) => filterWithin(r, `${prefix}/+/evt/#`)),
  }
}

/** True when a device with these filters (from `deviceFilters`) may subscribe to `filter`. */
export function maySubscribe(filter: string, allowed: { own: readonly string[]; events: readonly string[] }, prefix: string): boolean {
  for (const a of allowed.own) if (filterWithin(filter, a)) return true
  if (!filterWithin(filter, `${prefix}/+/evt/#`)) return false
  for (const a of allowed.events) if (filterWithin(filter, a)) return true
  return false
}
