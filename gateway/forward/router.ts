// Which events go to which targets, and in what form: a device's event topic
// (`ob/<device>/evt/<service>/<version>/<event>`) against the configured routes, then one row per
// target with its subject (or routing key), headers and body.
import { RESULT_EVENT_SUFFIXES } from '../../runtime/contract/queue.js'
import type { Envelope } from '../../runtime/wire/envelope.js'
import { createEnvelopeCodec, type EnvelopeCodec } from '../../runtime/wire/codec.js'
import { DEFAULT_TOPIC_PREFIX, topicMatches } from '../../runtime/wire/topics.js'
import type { ForwardConfig, RouteConfig, TargetConfig } from './forward-config.js'
import type { NewForwardMessage } from './forward-queue.js'

/** The parts of an event topic. */
export interface EventTopic {
  device: string
  service: string
  version: string
  event: string
}

/** What became of one publish: rows to queue, or why there are none. */
export type Routed = { rows: NewForwardMessage[] } | { skipped: 'not-an-event' | 'no-route' } | { dropped: 'malformed' | 'sender' }

/** `ob/<device>/evt/<service>/<version>/<event>` taken apart; undefined for any other topic. */
export function parseEventTopic(topic: string, prefix = DEFAULT_TOPIC_PREFIX): EventTopic | undefined {
  const l = topic.split('/')
  if (l.length !== 6 || l[0] !== prefix || l[2] !== 'evt') return undefined
  return { device: l[1]!, service: l[3]!, version: l[4]!, event: l[5]! }
}

/** A device id pattern (`*`: any run of characters) as a test. */
function globTest(pattern: string): (s: string) => boolean {
  if (pattern === '*') return () => true
  if (!pattern.includes('*')) return (s) => s === pattern
  const re = new RegExp(`^${pattern.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`)
  return (s) => re.test(s)
}

interface CompiledRoute {
  matches(t: EventTopic): boolean
  to: readonly string[]
}

function compileRoute(r: RouteConfig): CompiledRoute {
  const devices = r.devices.map(globTest)
  const events = r.events
  const results = r.queues === undefined ? undefined : new Set(r.queues.flatMap((q) => RESULT_EVENT_SUFFIXES.map((k) => `${q}.${k}`)))
  return {
    to: r.to,
    matches: (t) =>
      devices.some((d) => d(t.device)) && events.some((f) => topicMatches(f, `${t.service}/${t.version}/${t.event}`)) && (results === undefined || results.has(t.event)),
  }
}

/** `{device}`, `{service}`, `{version}`, `{event}` filled in. */
export function renderTemplate(template: string, t: EventTopic): string {
  return template.replace(/\{(device|service|version|event)\}/g, (_, k: keyof EventTopic) => t[k])
}

/**
 * Byte strings in a payload become base64 text in JSON (JSON.stringify would write them as
 * objects of indices, or a Buffer as `{type, data}`: its toJSON runs before a replacer sees the
 * value, so the holder's own property is looked at).
 */
export function jsonReplacer(this: unknown, key: string, value: unknown): unknown {
  const raw = (this as Record<string, unknown> | null)?.[key]
  if (raw instanceof Uint8Array) return Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64')
  return value
}

/**
 * The JSON body of a forwarded event: the envelope's fields by name and the payload.
 * `{ id, device, instance, service, version, event, at, traceparent?, tenant?, principal?, payload }`.
 */
export function jsonBody(env: Envelope, t: EventTopic): Uint8Array {
  const doc: Record<string, unknown> = { id: env.id, device: t.device, instance: env.inst, service: t.service, version: t.version, event: t.event, at: env.at }
  if (env.traceparent !== undefined) doc.traceparent = env.traceparent
  if (env.tenant !== undefined) doc.tenant = env.tenant
  if (env.principal !== undefined) doc.principal = env.principal
  doc.payload = env.payload
  return Buffer.from(JSON.stringify(doc, jsonReplacer))
}

/** The envelope's fields as headers, the same for every target. */
export function envelopeHeaders(env: Envelope, t: EventTopic): Record<string, string> {
  const h: Record<string, string> = {
    'Outpost-Id': env.id,
    'Outpost-Device': t.device,
    'Outpost-Instance': env.inst,
    'Outpost-Service': t.service,
    'Outpost-Version': t.version,
    'Outpost-Event': t.event,
    'Outpost-At': String(env.at),
  }
  if (env.traceparent !== undefined) h.traceparent = env.traceparent
  if (env.tenant !== undefined) h['Outpost-Tenant'] = env.tenant
  if (env.principal !== undefined) h['Outpost-Principal'] = env.principal
  return h
}

export interface Router {
  /** The rows one publish makes (none for a topic no route takes). Never throws. */
  route(topic: string, payload: Uint8Array, receivedAt: number): Routed
  /** True when some route could take an event of this topic (cheap; no decoding). */
  wants(topic: string): boolean
}

/**
 * A router over the configured routes and targets; `codec` decodes the frames (one per router).
 * The default codec takes frames of any size: the broker's packet limit bounds them, and the
 * gatekeeper lets a device's events through up to it. With the codec's own 256 KiB limit an event
 * of 300 KiB was delivered to every subscriber but dropped here as `malformed`, with no word of
 * why; now it goes to the target, which stores it or dead-letters it with the target's reason
 * (JetStream's max_payload, say).
 */
export function createRouter(config: ForwardConfig, opts: { prefix?: string; codec?: EnvelopeCodec } = {}): Router {
  const prefix = opts.prefix ?? DEFAULT_TOPIC_PREFIX
  const codec = opts.codec ?? createEnvelopeCodec({ maxFrameBytes: Number.MAX_SAFE_INTEGER })
  const routes = config.routes.map(compileRoute)
  /** Target names for an event topic, each once, in the order the routes name them. */
  const targetsOf = (t: EventTopic): string[] => {
    const names = new Set<string>()
    for (const r of routes) if (r.matches(t)) for (const n of r.to) names.add(n)
    return [...names]
  }
  const subjectOf = (c: TargetConfig, t: EventTopic): string => renderTemplate(c.type === 'nats' ? c.subject : c.routingKey, t)
  return {
    wants(topic) {
      const t = parseEventTopic(topic, prefix)
      return t !== undefined && routes.some((r) => r.matches(t))
    },
    route(topic, payload, receivedAt) {
      const t = parseEventTopic(topic, prefix)
      if (t === undefined) return { skipped: 'not-an-event' }
      const names = targetsOf(t)
      if (names.length === 0) return { skipped: 'no-route' }
      const decoded = codec.decode(payload)
      if (!decoded.ok || decoded.envelope.kind !== 'event') return { dropped: 'malformed' }
      const env = decoded.envelope
      // The gatekeeper already refuses another sender when authentication is on; without it, the topic is the truth.
      if (env.src !== t.device) return { dropped: 'sender' }
      const headers = envelopeHeaders(env, t)
      let json: Uint8Array | undefined
      const rows: NewForwardMessage[] = []
      for (const name of names) {
        const c = config.targets[name]
        if (c === undefined) continue
        const cbor = c.encoding === 'cbor'
        const body = cbor ? payload : (json ??= jsonBody(env, t))
        rows.push({ target: name, id: env.id, device: t.device, subject: subjectOf(c, t), headers, contentType: cbor ? 'application/cbor' : 'application/json', body, receivedAt })
      }
      return { rows }
    },
  }
}
