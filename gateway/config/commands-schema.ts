// The `commands:` section of the gateway's config file: how cloud callers reach device commands.
import { redactUrl } from '../../runtime/redact-url.js'
import * as v from 'valibot'
import { defaultCommandsConfig, type CommandsConfig } from '../commands/command-config.js'
import { levelFilterProblem, strict, wholeNumber } from './schema-kit.js'

/** Why `rule` is not a command allow rule (`<device>/<service>/<version>/<command>`, `+`, a last `#`), or undefined. */
export function allowRuleProblem(rule: string): string | undefined {
  return levelFilterProblem(rule, ['device', 'service', 'version', 'command'], '+/thermo/1/+ or #')
}

const ALLOW = v.array(
  v.pipe(
    v.string('expected a rule such as +/thermo/1/+ or #'),
    v.rawCheck(({ dataset, addIssue }) => {
      const problem = dataset.typed ? allowRuleProblem(dataset.value) : undefined
      if (problem !== undefined) addIssue({ message: problem })
    }),
  ),
  'expected a list of rules <device>/<service>/<version>/<command>, e.g. ["+/thermo/1/+"]',
)
const secret = v.pipe(v.string('expected a string'), v.minLength(1, 'expected a non-empty string'))
const NATS_URL = v.pipe(v.string('expected a URL such as nats://127.0.0.1:4222'), v.regex(/^(nats|tls|ws|wss):\/\/[^\s]+$/, 'expected a URL such as nats://127.0.0.1:4222'))

/** Where replies may go unless configured: the NATS clients' inbox; RabbitMQ's direct reply-to and the queues it names. */
export const DEFAULT_NATS_REPLY_PREFIXES = ['_INBOX'] as const
export const DEFAULT_RABBIT_REPLY_PREFIXES = ['amq.rabbitmq.reply-to', 'amq.gen-'] as const

export const COMMANDS_FILE_SCHEMA = strict({
  timeoutMs: v.optional(wholeNumber(1, 3_600_000, ' (ms)')),
  maxTimeoutMs: v.optional(wholeNumber(1, 24 * 3_600_000, ' (ms)')),
  offline: v.optional(v.picklist(['fail', 'hold'], 'expected fail or hold')),
  maxPending: v.optional(wholeNumber(1, 1_000_000)),
  http: v.optional(strict({ enabled: v.optional(v.boolean('expected true or false')), allow: v.optional(ALLOW) })),
  nats: v.optional(
    strict({
      servers: v.union([NATS_URL, v.pipe(v.array(NATS_URL), v.minLength(1, 'expected at least one server'))], 'expected a URL such as nats://127.0.0.1:4222, or a list of them'),
      user: v.optional(secret),
      pass: v.optional(secret),
      token: v.optional(secret),
      subject: v.optional(v.pipe(v.string('expected a subject prefix such as outpost.cmd'), v.regex(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/, 'expected a subject prefix such as outpost.cmd (no wildcards)'))),
      queueGroup: v.optional(v.pipe(v.string('expected a queue group name'), v.regex(/^[A-Za-z0-9_.-]{1,64}$/, 'expected a queue group name'))),
      allow: v.optional(ALLOW),
      replyPrefixes: v.optional(v.pipe(v.array(v.pipe(v.string('expected a subject prefix such as _INBOX'), v.regex(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/, 'expected a subject prefix such as _INBOX (no wildcards)'))), v.minLength(1, 'expected at least one prefix'))),
    }),
  ),
  rabbitmq: v.optional(
    strict({
      url: v.pipe(v.string('expected a URL such as amqp://guest:guest@127.0.0.1:5672'), v.regex(/^amqps?:\/\/[^\s]+$/, 'expected a URL such as amqp://guest:guest@127.0.0.1:5672')),
      queue: v.optional(v.pipe(v.string('expected a queue name'), v.regex(/^[A-Za-z0-9_.:-]{1,127}$/, 'expected a queue name'))),
      prefetch: v.optional(wholeNumber(1, 10_000)),
      allow: v.optional(ALLOW),
      replyToPrefixes: v.optional(v.pipe(v.array(v.pipe(v.string('expected a queue name prefix such as amq.gen-'), v.regex(/^[A-Za-z0-9_.:-]{1,127}$/, 'expected a queue name prefix such as amq.gen-'))), v.minLength(1, 'expected at least one prefix'))),
    }),
  ),
})
export type CommandsFile = v.InferOutput<typeof COMMANDS_FILE_SCHEMA>

/** Problems between keys. */
export function commandsProblems(f: CommandsFile): string[] {
  const d = defaultCommandsConfig()
  const timeout = f.timeoutMs ?? d.timeoutMs
  const max = f.maxTimeoutMs ?? d.maxTimeoutMs
  return timeout > max ? [`commands.timeoutMs: ${timeout} is more than commands.maxTimeoutMs (${max})`] : []
}

/** The section with every default applied. */
export function commandsFromFile(f: CommandsFile | undefined): CommandsConfig {
  const d = defaultCommandsConfig()
  if (f === undefined) return d
  const n = f.nats
  const r = f.rabbitmq
  return {
    timeoutMs: f.timeoutMs ?? d.timeoutMs,
    maxTimeoutMs: f.maxTimeoutMs ?? d.maxTimeoutMs,
    offline: f.offline ?? d.offline,
    maxPending: f.maxPending ?? d.maxPending,
    http: { enabled: f.http?.enabled ?? d.http.enabled, allow: f.http?.allow ?? d.http.allow },
    ...(n === undefined
      ? {}
      : {
          nats: {
            servers: typeof n.servers === 'string' ? [n.servers] : [...n.servers],
            ...(n.user === undefined ? {} : { user: n.user }),
            ...(n.pass === undefined ? {} : { pass: n.pass }),
            ...(n.token === undefined ? {} : { token: n.token }),
            subject: n.subject ?? 'outpost.cmd',
            queueGroup: n.queueGroup ?? 'outpost-gateway',
            allow: n.allow ?? ['#'],
            replyPrefixes: n.replyPrefixes ?? [...DEFAULT_NATS_REPLY_PREFIXES],
          },
        }),
    ...(r === undefined ? {} : { rabbitmq: { url: r.url, queue: r.queue ?? 'outpost.commands', prefetch: r.prefetch ?? 64, allow: r.allow ?? ['#'], replyToPrefixes: r.replyToPrefixes ?? [...DEFAULT_RABBIT_REPLY_PREFIXES] } }),
  }
}

/** As --print-config shows it: passwords and tokens replaced. */
export function redactCommands(c: CommandsConfig, redacted: string): CommandsConfig {
  const shown = structuredClone(c)
  if (shown.nats?.pass !== undefined) shown.nats.pass = redacted
  if (shown.nats?.token !== undefined) shown.nats.token = redacted
  if (shown.nats !== undefined) shown.nats.servers = shown.nats.servers.map((u) => redactUrl(u).replace(':***@', `:${redacted}@`))
  if (shown.rabbitmq !== undefined) {
    try {
      const u = new URL(shown.rabbitmq.url)
      if (u.password !== '') shown.rabbitmq.url = shown.rabbitmq.url.replace(`:${u.password}@`, `:${redacted}@`)
    } catch {
      shown.rabbitmq.url = redacted
    }
  }
  return shown
}
