// The `forward:` section of the gateway's config file: cloud targets and the routes to them,
// checked key by key (load-config.ts reports the problems with their key paths), then defaults applied.
import { redactUrl } from '../../runtime/redact-url.js'
import * as v from 'valibot'
import { isTopicSegment } from '../../runtime/topic-level.js'
import { FORWARD_DEFAULTS, type ForwardConfig, type TargetConfig } from '../forward/forward-config.js'
import { subjectProblem } from '../forward/targets/nats-subject.js'
import { levelFilterProblem, strict, wholeNumber } from './schema-kit.js'

const NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/

const text = (what: string) => v.pipe(v.string(`expected ${what}`), v.minLength(1, `expected ${what}`))
const secret = v.pipe(v.string('expected a string'), v.minLength(1, 'expected a non-empty string'))

/** A subject or routing key template: text with `{device}`, `{service}`, `{version}`, `{event}`, and no other `{…}`. */
const template = (example: string) =>
  v.pipe(
    text(`a template such as ${example}`),
    v.check((s) => !/\{(?!(device|service|version|event)\})[^}]*\}/.test(s), `expected only {device}, {service}, {version} and {event} as placeholders, e.g. ${example}`),
    v.check((s) => !/\s/.test(s), 'expected no spaces'),
  )

/** `<service>/<version>/<event>` with `+` and a last `#`. */
export function eventRouteProblem(filter: string): string | undefined {
  return levelFilterProblem(filter, ['service', 'version', 'event'], 'thermo/1/+ or thermo/#')
}

const common = {
  encoding: v.optional(v.picklist(['cbor', 'json'], 'expected cbor or json')),
  window: v.optional(wholeNumber(1, 65_535)),
  confirmTimeoutMs: v.optional(wholeNumber(100, 600_000, ' (ms)')),
  maxBytes: v.optional(wholeNumber(1024, Number.MAX_SAFE_INTEGER, ' (bytes)')),
  whenFull: v.optional(v.picklist(['drop-oldest', 'drop-newest', 'refuse'], 'expected drop-oldest, drop-newest or refuse')),
}

const NATS_URL = v.pipe(v.string('expected a URL such as nats://127.0.0.1:4222'), v.regex(/^(nats|tls|ws|wss):\/\/[^\s]+$/, 'expected a URL such as nats://127.0.0.1:4222'))
const NATS = strict({
  type: v.literal('nats'),
  servers: v.union([NATS_URL, v.pipe(v.array(NATS_URL), v.minLength(1, 'expected at least one server'))], 'expected a URL such as nats://127.0.0.1:4222, or a list of them'),
  user: v.optional(secret),
  pass: v.optional(secret),
  token: v.optional(secret),
  stream: strict({
    name: v.pipe(v.string('expected a stream name'), v.regex(/^[A-Za-z0-9_-]{1,64}$/, 'expected a stream name: letters, digits, "_" or "-" (at most 64)')),
    subjects: v.optional(v.pipe(v.array(text('a subject such as outpost.evt.>')), v.minLength(1, 'expected at least one subject'))),
    create: v.optional(v.boolean('expected true or false')),
    duplicateWindowMs: v.optional(wholeNumber(1_000, 7 * 24 * 3_600_000, ' (ms)')),
  }),
  // Every event's subject must be one a client may publish to: no wildcard token, no empty one.
  subject: v.optional(
    v.pipe(
      template(FORWARD_DEFAULTS.natsSubject),
      v.rawCheck(({ dataset, addIssue }) => {
        const problem = dataset.typed ? subjectProblem(dataset.value.replace(/\{(device|service|version|event)\}/g, 'x')) : undefined
        if (problem !== undefined) addIssue({ message: `expected a subject events can be published to (${problem.replace(/^it /, 'this one ')}), e.g. ${FORWARD_DEFAULTS.natsSubject}` })
      }),
    ),
  ),
  ...common,
})

const RABBIT = strict({
  type: v.literal('rabbitmq'),
  url: v.pipe(v.string('expected a URL such as amqp://guest:guest@127.0.0.1:5672'), v.regex(/^amqps?:\/\/[^\s]+$/, 'expected a URL such as amqp://guest:guest@127.0.0.1:5672')),
  exchange: strict({
    name: v.pipe(v.string('expected an exchange name'), v.regex(/^[A-Za-z0-9_.:-]{1,127}$/, 'expected an exchange name: letters, digits, "_", ".", ":" or "-"')),
    type: v.optional(v.picklist(['topic', 'direct', 'fanout', 'headers'], 'expected topic, direct, fanout or headers')),
    create: v.optional(v.boolean('expected true or false')),
  }),
  queue: v.optional(strict({ name: v.pipe(v.string('expected a queue name'), v.regex(/^[A-Za-z0-9_.:-]{1,127}$/, 'expected a queue name: letters, digits, "_", ".", ":" or "-"')), bindingKey: text('a binding key such as #') })),
  routingKey: v.optional(template(FORWARD_DEFAULTS.rabbitRoutingKey)),
  ...common,
})

const TARGET = v.variant('type', [NATS, RABBIT], 'expected a target with type: nats or type: rabbitmq')

const EVENT_FILTER = v.pipe(
  v.string('expected an event filter such as thermo/1/+ or #'),
  v.rawCheck(({ dataset, addIssue }) => {
    const problem = dataset.typed ? eventRouteProblem(dataset.value) : undefined
    if (problem !== undefined) addIssue({ message: problem })
  }),
)

const ROUTE = strict({
  events: v.optional(v.pipe(v.array(EVENT_FILTER, 'expected a list of event filters, e.g. [thermo/1/+]'), v.minLength(1, 'expected at least one filter'))),
  devices: v.optional(v.pipe(v.array(v.pipe(v.string('expected a device id pattern'), v.regex(/^[^\s/+#]{1,128}$/, 'expected a device id, "*" for any characters (e.g. thermo-*)')), 'expected a list of device patterns, e.g. ["thermo-*"]'), v.minLength(1, 'expected at least one pattern'))),
  queues: v.optional(v.array(v.pipe(v.string('expected a queue name'), v.check(isTopicSegment, 'expected a queue name')), 'expected a list of queue names')),
  to: v.pipe(v.array(v.pipe(v.string('expected a target name'), v.regex(NAME, 'expected a target name')), 'expected a list of target names, e.g. [cloud]'), v.minLength(1, 'expected at least one target')),
})

export const FORWARD_FILE_SCHEMA = strict({
  targets: v.record(v.pipe(v.string(), v.regex(NAME, 'expected a target name: letters, digits, "_" or "-" (at most 64)')), TARGET, 'expected a mapping of target names to targets'),
  routes: v.optional(v.array(ROUTE, 'expected a list of routes, e.g. [{ events: ["#"], to: [cloud] }]')),
})
export type ForwardFile = v.InferOutput<typeof FORWARD_FILE_SCHEMA>

/** The fixed start of a subject template as a stream subject: `outpost.evt.{device}.…` → `outpost.evt.>`. */
export function streamSubjectOf(subject: string): string {
  const tokens = subject.split('.')
  const fixed: string[] = []
  for (const t of tokens) {
    if (t.includes('{')) break
    fixed.push(t)
  }
  return fixed.length === tokens.length ? subject : [...fixed, '>'].join('.')
}

/** Problems no schema sees: a route to a target that is not defined. `forward.routes[i].to: …`. */
export function forwardProblems(f: ForwardFile): string[] {
  const names = Object.keys(f.targets)
  const problems: string[] = []
  ;(f.routes ?? []).forEach((r, i) => {
    for (const t of r.to) if (!names.includes(t)) problems.push(`forward.routes[${i}].to: unknown target "${t}"; expected one of ${names.join(', ') || '(no targets defined)'}`)
  })
  for (const [name, t] of Object.entries(f.targets)) {
    if (t.type === 'nats' && t.token !== undefined && (t.user !== undefined || t.pass !== undefined)) problems.push(`forward.targets.${name}: expected either token or user and pass, not both`)
  }
  return problems
}

/** The section with every default applied. */
export function forwardFromFile(f: ForwardFile): ForwardConfig {
  const targets: Record<string, TargetConfig> = {}
  for (const [name, t] of Object.entries(f.targets)) {
    const base = {
      encoding: t.encoding ?? FORWARD_DEFAULTS.encoding,
      window: t.window ?? FORWARD_DEFAULTS.window,
      confirmTimeoutMs: t.confirmTimeoutMs ?? FORWARD_DEFAULTS.confirmTimeoutMs,
      maxBytes: t.maxBytes ?? FORWARD_DEFAULTS.maxBytes,
      whenFull: t.whenFull ?? FORWARD_DEFAULTS.whenFull,
    }
    if (t.type === 'nats') {
      const subject = t.subject ?? FORWARD_DEFAULTS.natsSubject
      targets[name] = {
        type: 'nats',
        ...base,
        servers: typeof t.servers === 'string' ? [t.servers] : [...t.servers],
        ...(t.user === undefined ? {} : { user: t.user }),
        ...(t.pass === undefined ? {} : { pass: t.pass }),
        ...(t.token === undefined ? {} : { token: t.token }),
        stream: { name: t.stream.name, subjects: t.stream.subjects ?? [streamSubjectOf(subject)], create: t.stream.create ?? true, duplicateWindowMs: t.stream.duplicateWindowMs ?? FORWARD_DEFAULTS.duplicateWindowMs },
        subject,
      }
    } else {
      targets[name] = {
        type: 'rabbitmq',
        ...base,
        url: t.url,
        exchange: { name: t.exchange.name, type: t.exchange.type ?? 'topic', create: t.exchange.create ?? true },
        ...(t.queue === undefined ? {} : { queue: { ...t.queue } }),
        routingKey: t.routingKey ?? FORWARD_DEFAULTS.rabbitRoutingKey,
      }
    }
  }
  const routes = (f.routes ?? []).map((r) => ({ events: r.events ?? ['#'], devices: r.devices ?? ['*'], ...(r.queues === undefined ? {} : { queues: [...r.queues] }), to: [...r.to] }))
  return { targets, routes }
}

/** The section as --print-config shows it: passwords and tokens replaced. */
export function redactForward(c: ForwardConfig, redacted: string): ForwardConfig {
  const shown = structuredClone(c)
  for (const t of Object.values(shown.targets)) {
    if (t.type === 'nats') {
      if (t.pass !== undefined) t.pass = redacted
      if (t.token !== undefined) t.token = redacted
      t.servers = t.servers.map((u) => redactUrl(u).replace(':***@', `:${redacted}@`))
    } else {
      try {
        const u = new URL(t.url)
        if (u.password !== '') t.url = t.url.replace(`:${u.password}@`, `:${redacted}@`)
      } catch {
        t.url = redacted
      }
    }
  }
  return shown
}
